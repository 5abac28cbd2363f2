#pragma once
/// The names torch.save writes into pickles for storage types and dtypes.
#include <torch/torch.h>

#include <optional>
#include <string>

namespace sdtrain {

/// Element dtype of a storage class ("torch.FloatStorage" -> kFloat, "torch.UntypedStorage" ->
/// kByte), or nullopt if `qualified_name` is not a storage class sdtrain reads.
std::optional<torch::Dtype> storage_type_dtype(const std::string& qualified_name);

/// The storage class torch.save names for a dtype ("torch.FloatStorage"); throws FormatError
/// (with `context`) for dtypes that have none (float8, unsigned > 8 bits).
std::string dtype_storage_type(torch::Dtype dtype, const std::string& context);

/// Dtype for a pickled dtype object ("torch.float16"), or nullopt.
std::optional<torch::Dtype> dtype_from_global(const std::string& qualified_name);

}  // namespace sdtrain

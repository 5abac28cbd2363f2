#pragma once
/// Writes .safetensors files.
#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace sdtrain {

/// Writes `tensors` (any device, layout or contiguity; stored contiguous, little-endian) with
/// `metadata` as "__metadata__", in the given order, in the reference format (header padded
/// with spaces to a multiple of 8 bytes). Atomic: the file is written to a temporary next to
/// `path`, fsynced and renamed, so `path` is never half-written. With overwrite == false an
/// existing `path` is refused. Throws FormatError for duplicate or reserved ("__metadata__")
/// names, names that are not UTF-8, dtypes safetensors cannot store, or I/O failures.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {}, bool overwrite = true);

}  // namespace sdtrain

#pragma once
/// Encodes PickleValues as a protocol-2 pickle in torch.save's dialect.
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "framework/io/pickle_value.h"

namespace sdtrain {

/// Writes one pickle. Tensors become torch._utils._rebuild_tensor_v2(persistent storage,
/// offset, size, stride, False, OrderedDict()) with the storage referenced by persistent id
/// ('storage', torch.<Type>Storage, key, 'cpu', numel); storages() then lists what to write as
/// data/<key>. Bytes use _codecs.encode(latin-1 text), sets builtins.set(list), as CPython's
/// protocol 2 does. Throws FormatError (prefixed by `context`) for refused placeholders,
/// unsupported dtypes, storages viewed with two dtypes, or nesting deeper than 1000.
class PickleWriter {
 public:
  explicit PickleWriter(std::string context) : context_(std::move(context)) {}
  /// The complete pickle of `value` (PROTO 2 ... STOP).
  std::string dump(const PickleValue& value);
  /// Storages referenced by the pickle, in key order ("0", "1", ...): 1-D CPU tensors of their
  /// element dtype covering the whole storage.
  const std::vector<torch::Tensor>& storages() const { return storages_; }

 private:
  void write(const PickleValue& value, int depth);
  void write_int(std::int64_t v);
  void write_string(const std::string& s);
  void write_global(const std::string& qualified_name);
  void write_tensor(const torch::Tensor& t);
  std::string context_;
  std::string out_;
  std::vector<torch::Tensor> storages_;
  std::unordered_map<const void*, std::size_t> storage_keys_;
};

}  // namespace sdtrain

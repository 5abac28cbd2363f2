#pragma once
/// Writes torch.save-compatible zip files (.ckpt).
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "framework/io/pickle_value.h"

namespace sdtrain {

/// Writes `state` (plain values, dicts, lists, tuples, sets, torch dtypes and tensors; no
/// refused placeholders) as torch.save does: a zip of stored entries `archive/data.pkl`
/// (pickle protocol 2, tensors as torch._utils._rebuild_tensor_v2 over persistent storages),
/// `archive/data/<n>` (each storage once, so views sharing a storage stay shared; data aligned to
/// 64 bytes), `archive/byteorder` ("little"), `archive/version`, `archive/.format_version`,
/// `archive/.storage_alignment`. Loadable by torch.load(path, weights_only=True). Tensors on
/// other devices are copied to the CPU storage by storage. Atomic (temporary file, fsync,
/// rename); with overwrite == false an existing `path` is refused. Throws FormatError for values
/// that cannot be saved (refused placeholders, dtypes without a torch storage type such as
/// float8, nesting deeper than 1000) or on I/O failure.
void save_ckpt(const std::string& path, const PickleValue& state, bool overwrite = true);

/// Convenience: saves {"state_dict": {name: tensor, ...}} plus `extras` (e.g. "global_step")
/// at the top level, the layout load_ckpt_state_dict and Lightning-style tools expect.
void save_ckpt_state_dict(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                          const std::vector<std::pair<std::string, PickleValue>>& extras = {}, bool overwrite = true);

}  // namespace sdtrain

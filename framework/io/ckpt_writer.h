#pragma once
/// Writes torch.save-compatible zip files (.ckpt) with LibTorch's own serializer.
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "framework/io/pickle_value.h"

namespace sdtrain {

/// Writes `state` as torch.save does, through LibTorch's torch::jit::Pickler (protocol 2,
/// tensors as torch._utils._rebuild_tensor_v2 over persistent storages) and
/// caffe2::serialize::PyTorchStreamWriter (the zip torch.save itself writes: stored entries with
/// data aligned to 64 bytes, zip64 past 4 GiB): `archive/data.pkl`, `archive/data/<n>` (each
/// storage once, so views sharing a storage stay shared), `archive/byteorder` ("little"),
/// `archive/.format_version`, `archive/.storage_alignment`, `archive/version`,
/// `archive/.data/serialization_id`. Loadable by torch.load(path, weights_only=True) and by
/// load_ckpt.
///
/// Writable values: None, bool, int, float, str, list, tuple, dict (keys bool, int, float or str)
/// and strided tensors of a dtype with a torch storage type (not float8, not uint16/32/64).
/// LibTorch's pickler has no form for sets, bytes or bare globals such as torch.float16, so those
/// (and refused placeholders) throw FormatError naming `path` and the value, before any file is
/// created. Tensors are written detached (requires_grad False, as state_dict() gives them);
/// tensors on other devices are copied to the CPU storage by storage; two views of one storage
/// with different dtypes, or nesting deeper than 1000 (a cycle), throw FormatError.
///
/// Atomic (temporary file beside `path`, fsync, rename: AtomicFile); with overwrite == false an
/// existing `path` is refused. An I/O failure throws FormatError naming `path` and leaves no file.
void save_ckpt(const std::string& path, const PickleValue& state, bool overwrite = true);

/// Convenience: saves {"state_dict": {name: tensor, ...}} plus `extras` (e.g. "global_step")
/// at the top level, the layout load_ckpt_state_dict and Lightning-style tools expect.
void save_ckpt_state_dict(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                          const std::vector<std::pair<std::string, PickleValue>>& extras = {}, bool overwrite = true);

}  // namespace sdtrain

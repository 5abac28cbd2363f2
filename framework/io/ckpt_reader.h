#pragma once
/// Reads torch.save zip files (.ckpt, .pt, .pth, .bin) through the restricted unpickler.
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "framework/io/pickle_reader.h"
#include "framework/io/pickle_value.h"

namespace sdtrain {

/// Options for load_ckpt.
struct CkptLoadOptions {
  /// kStrict refuses every global outside the allow-list (like torch.load(weights_only=True));
  /// kTolerateKnownData turns the data-only classes in `tolerated` into inert placeholders.
  GlobalPolicy policy = GlobalPolicy::kStrict;
  /// Tolerated global prefixes; empty means default_tolerated_globals().
  std::vector<std::string> tolerated;
  /// Check the CRC-32 of every storage as it is mapped (reads the whole file once).
  bool verify_crc = false;
};

/// The decoded pickle of a checkpoint.
struct CkptContents {
  PickleValue root;
  /// Globals that became inert placeholders (kTolerateKnownData only), each once.
  std::vector<std::string> tolerated_globals;
};

/// Decodes the `<prefix>/data.pkl` of a torch.save zip. Storages (`<prefix>/data/<key>`) are
/// mapped lazily: each tensor is a CPU view into the file's copy-on-write mapping (shared
/// storages stay shared, as in an EMA copy viewing the model's weights) unless its data is
/// misaligned or the file's byteorder is big-endian, when it is copied. Nothing in the file is
/// ever imported or executed. Throws FormatError naming the file (and the global, entry or
/// tensor at fault): not a zip / legacy pre-1.6 format, missing data.pkl, refused global,
/// storage missing or smaller than declared, a tensor view outside its storage.
CkptContents load_ckpt(const std::string& path, const CkptLoadOptions& options = {});

/// The tensors of a checkpoint's state dict, in pickle order: root[key] when the root is a dict
/// holding `key` (Lightning and CompVis .ckpt: "state_dict"), else the root itself when it is a
/// dict of tensors (torch.save(model.state_dict())). Loads with GlobalPolicy::kTolerateKnownData
/// so that Lightning's extra objects (hyper_parameters holding argparse.Namespace, pathlib or
/// omegaconf objects, callbacks keyed by ModelCheckpoint classes) become inert placeholders
/// outside the state dict and a warning (TORCH_WARN) lists them; any other global (os.system,
/// builtins.eval, subprocess.Popen, user classes, ...) anywhere in the file is refused by name.
/// A state dict entry that is not a tensor throws FormatError naming the entry.
/// `tolerated_out`, when given, receives the placeholder globals.
std::vector<std::pair<std::string, torch::Tensor>> load_ckpt_state_dict(
    const std::string& path, const std::string& key = "state_dict",
    std::vector<std::string>* tolerated_out = nullptr);

}  // namespace sdtrain

#pragma once
/// A finished training checkpoint read for use outside the run (sampling with `sdsample`):
/// the run's effective config and the trained or EMA weights, after the manifest check.
#include <map>
#include <string>

#include <torch/torch.h>

#include "proto/sdtrain.pb.h"

namespace sdtrain {

struct CheckpointSnapshot {
  TrainConfig config;      ///< the run's effective config (plugin libraries it names are loaded)
  std::string config_dir;  ///< relative paths in `config` resolve against this folder
  int64_t step = 0;
  bool ema = false;        ///< `weights` are the EMA copy
  /// By trainable-module parameter name (Model::trainable_module().named_parameters()).
  std::map<std::string, torch::Tensor> weights;
};

/// True when `path` is a checkpoint folder written by CheckpointManager (manifest.json and
/// trainer_state.json inside).
bool is_checkpoint_folder(const std::string& path);

/// Reads checkpoint `folder` as the trainer wrote it (checkpoint_parts.h): verifies the files it
/// reads against the manifest (FormatError naming the file), parses the stored config of part
/// "run" (loading its plugin libraries, resolved against the config's folder), and reads
/// ema.safetensors when `use_ema` and the run kept an EMA, model.safetensors otherwise.
CheckpointSnapshot read_checkpoint_snapshot(const std::string& folder, bool use_ema);

}  // namespace sdtrain

#include "framework/train/checkpoint_snapshot.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "framework/checkpoint/checkpoint_folder.h"
#include "framework/config/config_loader.h"
#include "framework/io/safetensors_reader.h"
#include "framework/log/logger.h"
#include "framework/registry/plugin_loader.h"
#include "framework/train/checkpoint_parts.h"
#include "sdtrain/errors.h"

namespace fs = std::filesystem;

namespace sdtrain {

bool is_checkpoint_folder(const std::string& path) {
  return fs::is_directory(path) && fs::exists(fs::path(path) / kCheckpointManifest) &&
         fs::exists(fs::path(path) / kCheckpointSharedState);
}

CheckpointSnapshot read_checkpoint_snapshot(const std::string& folder, bool use_ema) {
  if (!is_checkpoint_folder(folder)) {
    throw FormatError(folder + ": not an sdtrain checkpoint (no " + kCheckpointManifest + " / " +
                      kCheckpointSharedState + ")");
  }
  // Only the files read here are verified (not the optimizer state, twice the model's size).
  const CheckpointFolder checkpoint(folder);
  CheckpointSnapshot snapshot;
  snapshot.step = checkpoint.step();
  snapshot.ema = use_ema && checkpoint.lists(kCheckpointEmaFile);
  if (use_ema && !snapshot.ema) SDTRAIN_LOG(WARNING) << folder << ": the run kept no EMA; using the trained weights";
  const std::string state_path = (fs::path(folder) / kCheckpointSharedState).string();
  std::string config_text;
  try {
    const nlohmann::json& run = checkpoint.shared_parts().at(kRunRecordPart);
    config_text = run.at("config").get<std::string>();
    snapshot.config_dir = run.at("config_dir").get<std::string>();
  } catch (const nlohmann::json::exception& error) {
    throw FormatError(state_path + ": part '" + kRunRecordPart + "': " + error.what());
  }
  load_plugin_libraries(read_plugin_libraries(config_text, state_path), snapshot.config_dir);
  parse_text_config(config_text, state_path, &snapshot.config);

  const SafetensorsReader reader(checkpoint.verified(snapshot.ema ? kCheckpointEmaFile : kCheckpointWeightsFile));
  for (auto& [name, tensor] : reader.tensors()) snapshot.weights[name] = tensor;
  return snapshot;
}

}  // namespace sdtrain

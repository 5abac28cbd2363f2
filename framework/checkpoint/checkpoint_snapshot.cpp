#include "framework/checkpoint/checkpoint_snapshot.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "framework/checkpoint/checkpoint_manager.h"
#include "framework/config/config_loader.h"
#include "framework/io/safetensors_reader.h"
#include "framework/log/logger.h"
#include "framework/registry/plugin_loader.h"
#include "framework/util/errors.h"
#include "framework/util/file_util.h"

namespace fs = std::filesystem;

namespace sdtrain {

bool is_checkpoint_folder(const std::string& path) {
  return fs::is_directory(path) && fs::exists(fs::path(path) / "manifest.json") &&
         fs::exists(fs::path(path) / "trainer_state.json");
}

CheckpointSnapshot read_checkpoint_snapshot(const std::string& folder, bool use_ema) {
  if (!is_checkpoint_folder(folder)) {
    throw FormatError(folder + ": not an sdtrain checkpoint (no manifest.json / trainer_state.json)");
  }
  CheckpointSnapshot snapshot;
  const fs::path ema_file = fs::path(folder) / "ema.safetensors";
  snapshot.ema = use_ema && fs::exists(ema_file);
  if (use_ema && !snapshot.ema) SDTRAIN_LOG(WARNING) << folder << ": the run kept no EMA; using the trained weights";
  const fs::path weights_file = snapshot.ema ? ema_file : fs::path(folder) / "model.safetensors";
  // Only the files read here (the optimizer state, twice the model's size, is not).
  verify_checkpoint_files(folder, {"trainer_state.json", weights_file.filename().string()});
  const std::string state_path = (fs::path(folder) / "trainer_state.json").string();
  std::string config_text;
  try {
    const nlohmann::json state = nlohmann::json::parse(read_file(state_path));
    snapshot.step = state.at("step").get<int64_t>();
    config_text = state.at("config").get<std::string>();
    if (state.contains("config_dir")) snapshot.config_dir = state.at("config_dir").get<std::string>();
  } catch (const nlohmann::json::exception& error) {
    throw FormatError(state_path + ": " + error.what());
  }
  if (snapshot.config_dir.empty()) {
    throw FormatError(state_path + ": no config_dir (written by an sdtrain before 2026-11-30, which did not record "
                      "where the run's config was, so its relative paths cannot be resolved)");
  }
  load_plugin_libraries(read_plugin_libraries(config_text, state_path), snapshot.config_dir);
  parse_text_config(config_text, state_path, &snapshot.config);

  const SafetensorsReader reader(weights_file.string());
  for (auto& [name, tensor] : reader.tensors()) snapshot.weights[name] = tensor;
  return snapshot;
}

}  // namespace sdtrain

#include "plugins/models/stable_diffusion/sd_adapter_export.h"

#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "framework/config/config_loader.h"
#include "framework/io/atomic_file.h"
#include "framework/util/file_util.h"

namespace sdtrain {
namespace fs = std::filesystem;
namespace {

std::string number(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

/// kohya's ss_base_model_version: "sd_v1", "sd_v2" (OpenCLIP's gelu text encoder) or
/// "sdxl_base_v1-0" (two text encoders), which A1111 and ComfyUI's model lists filter adapters by.
std::string base_model_version(const StableDiffusionOptions& options) {
  if (options.has_text_encoder_2()) return "sdxl_base_v1-0";
  return options.text_encoder().hidden_act() == "gelu" ? "sd_v2" : "sd_v1";
}

/// kohya's training metadata keys that describe the network and its base (the ones A1111 and
/// the model sites read); training-run figures belong to the run's own logs.
std::map<std::string, std::string> kohya_metadata(const StableDiffusionOptions& options, const std::string& base_dir) {
  const LoraOptions& lora = options.adapter().lora();
  const bool sd2 = !options.has_text_encoder_2() && options.text_encoder().hidden_act() == "gelu";
  nlohmann::json args = nlohmann::json::object();  // kohya keeps network_args as strings
  if (lora.conv_rank() > 0) {
    args["conv_dim"] = std::to_string(lora.conv_rank());
    args["conv_alpha"] = number(lora.conv_alpha());
  }
  if (lora.rank_dropout() > 0) args["rank_dropout"] = number(lora.rank_dropout());
  if (lora.module_dropout() > 0) args["module_dropout"] = number(lora.module_dropout());
  std::map<std::string, std::string> metadata{
      {"ss_network_module", "networks.lora"},
      {"ss_network_dim", std::to_string(lora.rank())},
      {"ss_network_alpha", number(lora.alpha() == 0 ? lora.rank() : lora.alpha())},
      {"ss_network_dropout", number(lora.dropout())},
      {"ss_network_args", args.dump()},
      {"ss_base_model_version", base_model_version(options)},
      {"ss_v2", sd2 ? "True" : "False"},
      {"ss_network_train_unet_only", lora.text_encoder() ? "False" : "True"},
      {"ss_training_comment", "trained with sdtrain"},
  };
  if (!options.weights().empty()) {
    const std::string weights = resolve_config_path(base_dir, options.weights());
    metadata["ss_sd_model_name"] = fs::path(weights).filename().string();
    if (fs::is_regular_file(weights)) metadata["ss_new_sd_model_hash"] = sha256_file(weights);
  }
  return metadata;
}

}  // namespace

LoraFile lora_file_of(const LoraNetwork& lora, const StableDiffusionOptions& options, const std::string& base_dir) {
  LoraFile file;
  torch::NoGradGuard no_grad;
  for (const auto& item : lora->named_parameters()) {
    file.tensors[item.key()] = item.value().detach().to(torch::kCPU, torch::kFloat32).contiguous();
  }
  for (const auto& item : lora->named_buffers()) {
    file.tensors[item.key()] = item.value().detach().to(torch::kCPU, torch::kFloat32).contiguous();
  }
  file.metadata = kohya_metadata(options, base_dir);
  return file;
}

void export_lora_folder(const LoraFile& file, const std::map<std::string, LoraTarget>& targets,
                        const std::string& folder) {
  const std::string name = fs::absolute(folder).lexically_normal().filename().string();
  write_folder_atomic(folder, [&](const std::string& temp) {
    write_lora_file(file, (fs::path(temp) / (name + ".safetensors")).string(), LoraFormat::kKohya, targets);
    write_lora_file(file, (fs::path(temp) / "pytorch_lora_weights.safetensors").string(), LoraFormat::kPeft, targets);
  });
}

}  // namespace sdtrain

#pragma once
/// Writing the LoRA adapters a stable_diffusion model trains, in the layouts other tools load.
#include <string>

#include "plugins/models/stable_diffusion/modules/lora_network.h"
#include "plugins/models/stable_diffusion/stable_diffusion.pb.h"
#include "plugins/models/stable_diffusion/weights/sd_lora_format.h"

namespace sdtrain {

/// The adapters' current weights (float32, on the CPU) and alphas in kohya's layout, with kohya's
/// ss_* metadata from `options`: the network module, rank, alpha, LoCon and dropout arguments,
/// the base model's file name and, when options.weights is a file, its SHA-256 as kohya records
/// it (ss_new_sd_model_hash), which A1111 shows and matches against its model list.
LoraFile lora_file_of(const LoraNetwork& lora, const StableDiffusionOptions& options, const std::string& base_dir);

/// Writes `file` into folder `folder`, complete or absent (never overwriting it):
/// "<folder name>.safetensors" (kohya) and "pytorch_lora_weights.safetensors" (diffusers/PEFT).
/// `targets` are the networks' (lora_targets). FormatError naming the folder on failure.
void export_lora_folder(const LoraFile& file, const std::map<std::string, LoraTarget>& targets,
                        const std::string& folder);

}  // namespace sdtrain

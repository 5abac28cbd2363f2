// write_lora_file: the internal naming as a kohya / A1111 file, or as the diffusers / PEFT file
// save_lora_weights writes.
#include <algorithm>
#include <utility>
#include <vector>

#include "framework/io/safetensors_writer.h"
#include "framework/util/strings.h"
#include "plugins/models/stable_diffusion/weights/sd_lora_format.h"
#include "plugins/models/stable_diffusion/weights/sd_lora_modules.h"
#include "plugins/models/stable_diffusion/weights/sd_lora_peft_metadata.h"

namespace sdtrain {
namespace {

using TensorList = std::vector<std::pair<std::string, torch::Tensor>>;

/// The most common value, ties going to the one seen first (collections.Counter.most_common,
/// which diffusers uses to choose r and lora_alpha).
template <typename Value>
Value most_common(const std::vector<Value>& values) {
  std::vector<std::pair<Value, int>> counts;
  for (const Value& value : values) {
    auto it = std::find_if(counts.begin(), counts.end(), [&](const auto& entry) { return entry.first == value; });
    if (it == counts.end()) {
      counts.emplace_back(value, 1);
    } else {
      ++it->second;
    }
  }
  auto best = counts.begin();
  for (auto it = counts.begin(); it != counts.end(); ++it) {
    if (it->second > best->second) best = it;
  }
  return best->first;
}

/// A module's name in LoraConfig patterns and target_modules. UNet patterns are anchored at the
/// start, as diffusers writes them ("^down_blocks..."). Text-encoder names drop "text_model." and
/// stay unanchored: peft matches a pattern against the end of the module's name, and
/// transformers names these modules with "text_model." before 5.6 and without it since, so this
/// form matches under both.
std::string peft_module_name(const LoraTarget& target) {
  if (target.component != "unet" && starts_with(target.module_path, "text_model.")) {
    return target.module_path.substr(11);
  }
  return target.module_path;
}

std::map<std::string, std::string> peft_header(const LoraFile& lora,
                                               const std::map<std::string, LoraModule>& modules) {
  std::map<std::string, std::vector<const LoraModule*>> by_component;
  for (const auto& [name, module] : modules) by_component[module.target->component].push_back(&module);
  std::map<std::string, PeftLoraConfig> configs;
  for (const auto& [component, list] : by_component) {
    std::vector<int64_t> ranks;
    std::vector<double> alphas;
    for (const LoraModule* module : list) {
      ranks.push_back(module->rank);
      alphas.push_back(module->alpha);
    }
    PeftLoraConfig& config = configs[component];
    config.r = most_common(ranks);
    config.lora_alpha = most_common(alphas);
    for (const LoraModule* module : list) {
      const std::string name = peft_module_name(*module->target);
      const std::string pattern = component == "unet" ? "^" + name : name;
      config.target_modules.push_back(name);
      if (module->rank != config.r) config.rank_pattern.emplace_back(pattern, module->rank);
      if (module->alpha != config.lora_alpha) config.alpha_pattern.emplace_back(pattern, module->alpha);
    }
  }
  std::map<std::string, std::string> header = lora.metadata;
  header["format"] = "pt";
  header[kLoraAdapterMetadataKey] = peft_metadata_json(configs);
  return header;
}

}  // namespace

void write_lora_file(const LoraFile& lora, const std::string& path, LoraFormat format,
                     const std::map<std::string, LoraTarget>& targets) {
  const auto modules = lora_modules(lora, targets, path);
  TensorList tensors;
  if (format == LoraFormat::kKohya) {
    for (const auto& [key, tensor] : lora.tensors) tensors.emplace_back(key, tensor);
    save_safetensors(path, tensors, lora.metadata, /*overwrite=*/false);
    return;
  }
  for (const auto& [name, module] : modules) {
    const std::string prefix = module.target->component + "." + module.target->module_path;
    tensors.emplace_back(prefix + ".lora_A.weight", module.down);
    tensors.emplace_back(prefix + ".lora_B.weight", module.up);
  }
  save_safetensors(path, tensors, peft_header(lora, modules), /*overwrite=*/false);
}

}  // namespace sdtrain

#include "plugins/models/stable_diffusion/weights/sd_lora_format.h"

#include <filesystem>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include "framework/util/strings.h"
#include "plugins/models/stable_diffusion/weights/sd_name_table.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

/// True for a module path with a part such as "lora_down": the layers of a live adapter wrapped
/// around a target, which are not targets themselves.
bool is_adapter_layer(const std::string& module_path) {
  for (const auto& part : split(module_path, '.')) {
    if (starts_with(part, "lora_")) return true;
  }
  return false;
}

/// `prefix` + `module_path` with '.' replaced by '_'.
std::string underscored(const std::string& prefix, const std::string& module_path) {
  std::string name = prefix + module_path;
  for (std::size_t i = prefix.size(); i < name.size(); ++i) {
    if (name[i] == '.') name[i] = '_';
  }
  return name;
}

/// The Linear and Conv2d modules of `network` as targets of `component`, by module path.
std::map<std::string, LoraTarget> targets_of(const torch::nn::Module& network, const std::string& component) {
  std::map<std::string, LoraTarget> found;
  for (const auto& item : network.named_modules("", /*include_self=*/false)) {
    const std::string& path = item.key();
    torch::nn::Module& module = *item.value();
    torch::Tensor weight;
    bool conv = false;
    if (auto* linear = module.as<torch::nn::Linear>()) {
      weight = linear->weight;
    } else if (auto* conv2d = module.as<torch::nn::Conv2d>()) {
      weight = conv2d->weight;
      conv = true;
    } else {
      continue;
    }
    if (is_adapter_layer(path)) continue;
    found.emplace(path, LoraTarget{component, path, conv, weight.sizes().vec()});
  }
  return found;
}

/// SDXL's UNet modules by their original (LDM / SGM) path, through the weights' name table:
/// "down_blocks.1.attentions.0.proj_in" → "input_blocks.4.1.proj_in".
std::map<std::string, std::string> original_unet_paths(const torch::nn::Module& unet,
                                                       const std::map<std::string, LoraTarget>& by_path) {
  std::vector<std::string> names;
  for (const auto& item : unet.named_parameters()) {
    if (!is_adapter_layer(item.key())) names.push_back(item.key());
  }
  const std::vector<NameRow> rows = unet_name_rows(infer_unet_layout(names, NameLayout::kDiffusers, "unet"));
  std::map<std::string, std::string> original;
  for (const auto& [path, target] : by_path) {
    const RenameResult renamed = rename_component({{path + ".weight", torch::Tensor()}}, rows, NameLayout::kDiffusers);
    if (renamed.tensors.size() != 1) throw std::logic_error("the UNet name table maps no module " + path);
    const std::string& name = renamed.tensors.begin()->first;
    original[path] = name.substr(0, name.size() - std::string_view(".weight").size());
  }
  return original;
}

/// Adds `by_path` under `name_of(path)`. '.' → '_' could in principle merge two paths; SD's
/// module names never do, and a silent overwrite would wrap the wrong module, so it is an error.
template <typename NameOf>
void add_targets(std::map<std::string, LoraTarget>& by_path, NameOf name_of, std::map<std::string, LoraTarget>& targets) {
  for (auto& [path, target] : by_path) {
    const std::string name = name_of(path);
    const auto [it, inserted] = targets.emplace(name, std::move(target));
    if (!inserted) {
      throw std::logic_error("modules " + it->second.module_path + " and " + path + " share the LoRA name " + name);
    }
  }
}

}  // namespace

std::string kohya_lora_name(const std::string& component, const std::string& module_path) {
  if (component == "unet") return underscored("lora_unet_", module_path);
  if (component == "text_encoder") return underscored("lora_te_", module_path);
  throw std::invalid_argument("kohya_lora_name: component '" + component + "': expected unet or text_encoder");
}

std::map<std::string, LoraTarget> lora_targets(const SdNetworks& networks) {
  std::map<std::string, LoraTarget> targets;
  const bool sdxl = !networks.text_encoder_2.is_empty();
  if (!networks.unet.is_empty()) {
    auto by_path = targets_of(*networks.unet, "unet");
    if (sdxl) {
      const auto original = original_unet_paths(*networks.unet, by_path);
      add_targets(by_path, [&](const std::string& path) { return underscored("lora_unet_", original.at(path)); }, targets);
    } else {
      add_targets(by_path, [](const std::string& path) { return kohya_lora_name("unet", path); }, targets);
    }
  }
  if (!networks.text_encoder.is_empty()) {
    auto by_path = targets_of(*networks.text_encoder, "text_encoder");
    const std::string prefix = sdxl ? "lora_te1_" : "lora_te_";
    add_targets(by_path, [&](const std::string& path) { return underscored(prefix, path); }, targets);
  }
  if (sdxl) {
    auto by_path = targets_of(*networks.text_encoder_2, "text_encoder_2");
    add_targets(by_path, [](const std::string& path) { return underscored("lora_te2_", path); }, targets);
  }
  return targets;
}

LoraNameIndex lora_name_index(const std::map<std::string, LoraTarget>& targets) {
  LoraNameIndex index;
  for (const auto& [name, target] : targets) index[target.component][target.module_path] = name;
  return index;
}

const char* lora_format_name(LoraFormat format) { return format == LoraFormat::kKohya ? "kohya" : "peft"; }

LoraFormat parse_lora_format(const std::string& name) {
  if (name == "kohya") return LoraFormat::kKohya;
  if (name == "peft") return LoraFormat::kPeft;
  throw ConfigError("unknown adapter format '" + name + "': expected kohya or peft");
}

LoraSpec parse_lora_spec(const std::string& text, const std::string& option) {
  LoraSpec spec{text, 1.0};
  const std::size_t colon = text.rfind(':');
  if (colon != std::string::npos && colon + 1 < text.size()) {
    const std::string weight = text.substr(colon + 1);
    char* end = nullptr;
    errno = 0;
    const double value = std::strtod(weight.c_str(), &end);
    if (end == weight.c_str() + weight.size() && errno == 0 && !std::isspace(static_cast<unsigned char>(weight[0]))) {
      if (!std::isfinite(value)) throw ConfigError(option + " " + text + ": the weight must be a finite number");
      spec.path = text.substr(0, colon);
      spec.weight = value;
    }
  }
  if (spec.path.empty()) throw ConfigError(option + " '" + text + "': expected FILE or FILE:WEIGHT");
  return spec;
}

LoraSpec parse_lora_file_spec(const std::string& text, const std::string& option) {
  const LoraSpec spec = parse_lora_spec(text, option);
  if (std::filesystem::is_regular_file(spec.path)) return spec;
  const std::size_t colon = text.rfind(':');
  if (spec.path == text && colon != std::string::npos && colon > 0 &&
      std::filesystem::is_regular_file(text.substr(0, colon))) {
    throw ConfigError(option + " " + text + ": the weight '" + text.substr(colon + 1) +
                      "' is not a number (expected FILE or FILE:WEIGHT)");
  }
  throw ConfigError(option + " " + text + ": no such file " + spec.path);
}

}  // namespace sdtrain

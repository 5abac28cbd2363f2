#include "plugins/models/stable_diffusion/weights/sd_lora_format.h"

#include <filesystem>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include "framework/util/strings.h"
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

void add_targets(const torch::nn::Module& network, const std::string& component, std::map<std::string, LoraTarget>& targets) {
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
    LoraTarget target{component, path, conv, weight.sizes().vec()};
    const std::string name = kohya_lora_name(component, path);
    // '.' → '_' could in principle merge two paths; SD's module names never do, and a silent
    // overwrite would wrap the wrong module, so it is an error.
    const auto [it, inserted] = targets.emplace(name, std::move(target));
    if (!inserted) {
      throw std::logic_error("modules " + it->second.module_path + " and " + path + " share the LoRA name " + name);
    }
  }
}

}  // namespace

std::string kohya_lora_name(const std::string& component, const std::string& module_path) {
  std::string prefix;
  if (component == "unet") {
    prefix = "lora_unet_";
  } else if (component == "text_encoder") {
    prefix = "lora_te_";
  } else {
    throw std::invalid_argument("kohya_lora_name: component '" + component + "': expected unet or text_encoder");
  }
  std::string name = prefix + module_path;
  for (std::size_t i = prefix.size(); i < name.size(); ++i) {
    if (name[i] == '.') name[i] = '_';
  }
  return name;
}

std::map<std::string, LoraTarget> lora_targets(const SdNetworks& networks) {
  std::map<std::string, LoraTarget> targets;
  if (!networks.unet.is_empty()) add_targets(*networks.unet, "unet", targets);
  if (!networks.text_encoder.is_empty()) add_targets(*networks.text_encoder, "text_encoder", targets);
  return targets;
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

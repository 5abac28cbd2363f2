#include "plugins/models/stable_diffusion/weights/sd_lora_modules.h"

#include <sstream>

#include "framework/util/strings.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

enum class Part { kDown, kUp, kAlpha };

/// The expected shapes of one target's down and up, for messages.
std::string expected_shapes(const LoraTarget& target) {
  const auto& w = target.weight_shape;
  if (target.conv) {
    return "Conv2d " + shape_text(w) + " takes lora_down [rank, " + std::to_string(w[1]) + ", " + std::to_string(w[2]) +
           ", " + std::to_string(w[3]) + "] and lora_up [" + std::to_string(w[0]) + ", rank, 1, 1]";
  }
  return "Linear " + shape_text(w) + " takes lora_down [rank, " + std::to_string(w[1]) + "] and lora_up [" +
         std::to_string(w[0]) + ", rank]";
}

bool down_fits(const torch::Tensor& down, const LoraTarget& target) {
  const auto& w = target.weight_shape;
  if (target.conv) {
    return down.dim() == 4 && down.size(1) == w[1] && down.size(2) == w[2] && down.size(3) == w[3];
  }
  return down.dim() == 2 && down.size(1) == w[1];
}

bool up_fits(const torch::Tensor& up, const LoraTarget& target) {
  const auto& w = target.weight_shape;
  if (target.conv) return up.dim() == 4 && up.size(0) == w[0] && up.size(2) == 1 && up.size(3) == 1;
  return up.dim() == 2 && up.size(0) == w[0];
}

}  // namespace

std::string shape_text(c10::IntArrayRef shape) {
  std::ostringstream text;
  text << "[";
  for (std::size_t i = 0; i < shape.size(); ++i) text << (i ? ", " : "") << shape[i];
  text << "]";
  return text.str();
}

std::string no_target_reason(const std::string& lora_name, const std::map<std::string, LoraTarget>& targets) {
  std::string reason = "no Linear or Conv2d of the UNet or the text encoder(s) has the LoRA name '" + lora_name + "'";
  bool sdxl = false;
  for (const auto& [name, target] : targets) sdxl = sdxl || target.component == "text_encoder_2";
  if (!sdxl && (starts_with(lora_name, "lora_te1_") || starts_with(lora_name, "lora_te2_"))) {
    return reason + " (two text encoders: an SDXL adapter, not one for a model with one text encoder)";
  }
  if (sdxl && starts_with(lora_name, "lora_te_")) {
    return reason + " (one text encoder: an adapter for SD v1 or 2.x; SDXL's are lora_te1_ / lora_te2_)";
  }
  for (const char* ldm : {"input_blocks", "middle_block", "output_blocks"}) {
    if (!sdxl && lora_name.find(ldm) != std::string::npos) {
      return reason + " (LDM block names, which kohya writes for SDXL; SD v1 and 2.x adapters use diffusers' " +
             "down_blocks / mid_block / up_blocks)";
    }
  }
  std::vector<std::string> names;
  names.reserve(targets.size());
  for (const auto& [name, target] : targets) names.push_back(name);
  const std::string closest = closest_match(lora_name, names);
  if (!closest.empty()) return reason + " (closest: '" + closest + "')";
  return reason + " (an adapter for another architecture or model size?)";
}

std::map<std::string, LoraModule> lora_modules(const LoraFile& lora, const std::map<std::string, LoraTarget>& targets,
                                               const std::string& source,
                                               const std::map<std::string, std::string>* file_keys) {
  const auto key_in_file = [&](const std::string& key) {
    if (file_keys != nullptr) {
      const auto it = file_keys->find(key);
      if (it != file_keys->end()) return it->second;
    }
    return key;
  };
  const auto fail = [&](const std::string& key, const std::string& what) {
    return FormatError(source + ": '" + key_in_file(key) + "': " + what);
  };

  std::map<std::string, LoraModule> modules;
  for (const auto& [key, tensor] : lora.tensors) {
    Part part;
    std::string name;
    if (ends_with(key, kLoraDownSuffix)) {
      part = Part::kDown;
      name = key.substr(0, key.size() - std::string_view(kLoraDownSuffix).size());
    } else if (ends_with(key, kLoraUpSuffix)) {
      part = Part::kUp;
      name = key.substr(0, key.size() - std::string_view(kLoraUpSuffix).size());
    } else if (ends_with(key, kLoraAlphaSuffix)) {
      part = Part::kAlpha;
      name = key.substr(0, key.size() - std::string_view(kLoraAlphaSuffix).size());
    } else {
      throw fail(key, "not a LoRA weight (expected <name>.lora_down.weight, <name>.lora_up.weight or <name>.alpha)");
    }
    const auto target = targets.find(name);
    if (target == targets.end()) throw fail(key, no_target_reason(name, targets));
    if (!tensor.defined()) throw fail(key, "holds no tensor");
    if (!torch::isFloatingType(tensor.scalar_type())) {
      throw fail(key, std::string("dtype ") + c10::toString(tensor.scalar_type()) + ": expected a floating-point tensor");
    }
    const int64_t non_finite = tensor.numel() - torch::isfinite(tensor).sum().item<int64_t>();
    if (non_finite > 0) {
      throw fail(key, "holds " + std::to_string(non_finite) + " non-finite value(s) (NaN or Inf) of " +
                          std::to_string(tensor.numel()));
    }
    LoraModule& module = modules[name];
    module.target = &target->second;
    switch (part) {
      case Part::kDown:
        module.down = tensor;
        break;
      case Part::kUp:
        module.up = tensor;
        break;
      case Part::kAlpha:
        if (tensor.numel() != 1) throw fail(key, "shape " + shape_text(tensor.sizes()) + ": an alpha is one number");
        module.alpha = tensor.to(torch::kFloat64).item<double>();
        module.has_alpha = true;
        break;
    }
  }

  for (auto& [name, module] : modules) {
    const LoraTarget& target = *module.target;
    if (!module.down.defined() || !module.up.defined()) {
      const std::string present = module.down.defined() ? kLoraDownSuffix
                                  : module.up.defined()  ? kLoraUpSuffix
                                                         : kLoraAlphaSuffix;
      const std::string absent = module.down.defined() ? kLoraUpSuffix : kLoraDownSuffix;
      throw fail(name + present, "has no " + key_in_file(name + absent) + " beside it");
    }
    if (!down_fits(module.down, target)) {
      throw fail(name + kLoraDownSuffix, "shape " + shape_text(module.down.sizes()) + " does not fit " +
                                             target.component + " " + target.module_path + ": its " +
                                             expected_shapes(target));
    }
    if (!up_fits(module.up, target)) {
      throw fail(name + kLoraUpSuffix, "shape " + shape_text(module.up.sizes()) + " does not fit " + target.component +
                                           " " + target.module_path + ": its " + expected_shapes(target));
    }
    module.rank = module.down.size(0);
    if (module.rank < 1) throw fail(name + kLoraDownSuffix, "rank 0: an adapter needs rank >= 1");
    if (module.up.size(1) != module.rank) {
      throw fail(name + kLoraUpSuffix, "rank " + std::to_string(module.up.size(1)) + " differs from the rank " +
                                           std::to_string(module.rank) + " of " + key_in_file(name + kLoraDownSuffix));
    }
    if (!module.has_alpha) module.alpha = static_cast<double>(module.rank);
  }
  if (modules.empty()) throw FormatError(source + ": holds no LoRA weights");
  return modules;
}

}  // namespace sdtrain

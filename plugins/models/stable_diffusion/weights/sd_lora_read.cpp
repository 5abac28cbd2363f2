// read_lora_file: kohya / A1111 / LyCORIS and diffusers / PEFT adapter files → the internal
// (kohya) naming, checked against the model's targets.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>

#include "framework/io/safetensors_reader.h"
#include "framework/util/strings.h"
#include "plugins/models/stable_diffusion/weights/sd_lora_format.h"
#include "plugins/models/stable_diffusion/weights/sd_lora_modules.h"
#include "plugins/models/stable_diffusion/weights/sd_lora_peft_metadata.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

/// A file being converted: the internal keys, each with the key it had in the file (for
/// messages), and the first file key that fits no target.
struct Conversion {
  LoraFile lora;
  std::map<std::string, std::string> file_keys;
  std::vector<std::string> misfits;  ///< file keys in sorted order
  std::string first_reason;          ///< why misfits[0] does not fit

  void misfit(const std::string& file_key, const std::string& reason) {
    if (misfits.empty()) first_reason = reason;
    misfits.push_back(file_key);
  }
  void add(const std::string& key, const std::string& file_key, const torch::Tensor& tensor) {
    lora.tensors[key] = tensor;
    file_keys[key] = file_key;
  }
  /// FormatError naming the first key that fits nothing, and how many do not.
  void throw_if_misfits(const std::string& path) const {
    if (misfits.empty()) return;
    std::string message = path + ": '" + misfits.front() + "': " + first_reason;
    if (misfits.size() > 1) message += " (" + std::to_string(misfits.size() - 1) + " more key(s) fit no module either)";
    throw FormatError(message);
  }
};

/// The kohya name of a LyCORIS "lycoris_<path>" module (a network made directly on the UNet or
/// the text encoder names its modules after that network alone), if it names a target.
std::optional<std::string> lycoris_to_kohya(const std::string& name, const std::map<std::string, LoraTarget>& targets) {
  const std::string rest = name.substr(std::string_view("lycoris_").size());
  for (const std::string& candidate : {"lora_unet_" + rest, "lora_te_" + rest, "lora_te_text_model_" + rest}) {
    if (targets.count(candidate)) return candidate;
  }
  return std::nullopt;
}

/// LyCORIS' Tucker conv (down 1×1 to rank, mid k×k rank → rank, up 1×1) is one k×k down conv
/// followed by up: down'[i, c] = Σ_j mid[i, j] · down[j, c] over the kernel (rebuild_tucker's
/// contraction, regrouped). Computed in float32, so the folded down keeps full precision.
torch::Tensor fold_tucker(const torch::Tensor& down, const torch::Tensor& mid, const std::string& path,
                          const std::string& down_key, const std::string& mid_key) {
  if (down.dim() != 4 || down.size(2) != 1 || down.size(3) != 1 || mid.dim() != 4 || mid.size(1) != down.size(0)) {
    throw FormatError(path + ": '" + mid_key + "': shape " + shape_text(mid.sizes()) + " with '" + down_key +
                      "' of shape " + shape_text(down.sizes()) +
                      " is not a Tucker conv (expected lora_down [rank, in, 1, 1], lora_mid [rank, rank, kh, kw])");
  }
  return torch::einsum("ijhw,jc->ichw", {mid.to(torch::kFloat32), down.to(torch::kFloat32).flatten(1)});
}

/// Other spellings of the targets' names that kohya-layout files use: an SDXL UNet's modules by
/// their diffusers paths ("lora_unet_down_blocks_1_attentions_0_..."), as some trainers write
/// them, for the LDM paths lora_targets names them by.
std::map<std::string, std::string> kohya_aliases(const std::map<std::string, LoraTarget>& targets) {
  std::map<std::string, std::string> aliases;
  for (const auto& [name, target] : targets) {
    if (target.component != "unet") continue;
    const std::string diffusers_name = kohya_lora_name("unet", target.module_path);
    if (diffusers_name != name && !targets.count(diffusers_name)) aliases[diffusers_name] = name;
  }
  return aliases;
}

Conversion convert_kohya(const SafetensorsReader& reader, const std::vector<std::string>& keys,
                         const std::map<std::string, LoraTarget>& targets) {
  Conversion out;
  out.lora.metadata = reader.metadata();
  const auto aliases = kohya_aliases(targets);
  std::map<std::string, std::pair<std::string, torch::Tensor>> mids;  // internal down key → (file key, mid)
  for (const std::string& key : keys) {
    const std::size_t dot = key.find('.');
    if (dot == std::string::npos) {
      out.misfit(key, "not a LoRA key (expected <lora name>.lora_down.weight, .lora_up.weight or .alpha)");
      continue;
    }
    std::string name = key.substr(0, dot);
    const std::string suffix = key.substr(dot);
    if (starts_with(name, "lycoris_")) {
      if (auto kohya = lycoris_to_kohya(name, targets)) name = *kohya;
    }
    if (const auto alias = aliases.find(name); alias != aliases.end()) name = alias->second;
    if (!targets.count(name)) {
      out.misfit(key, no_target_reason(name, targets));
      continue;
    }
    if (suffix == kLoraDownSuffix || suffix == kLoraUpSuffix || suffix == kLoraAlphaSuffix) {
      torch::Tensor tensor = reader.tensor(key);
      // Alphas are float32 scalars inside sdtrain, whatever the file stored (kohya saves them in
      // the training dtype, sometimes as [1]).
      if (suffix == kLoraAlphaSuffix && tensor.is_floating_point() && tensor.numel() == 1) {
        tensor = tensor.to(torch::kFloat32).reshape({}).clone();
      }
      out.add(name + suffix, key, tensor);
    } else if (suffix == ".lora_mid.weight") {
      mids[name + kLoraDownSuffix] = {key, reader.tensor(key)};
    } else if (suffix == ".dora_scale") {
      out.misfit(key, "DoRA (weight-decomposed LoRA) rescales whole weights, which is not a LoRA delta");
    } else {
      out.misfit(key, "'" + suffix.substr(1) +
                          "' is not a LoRA / LoCon weight (expected lora_down.weight, lora_up.weight, alpha or "
                          "LyCORIS' lora_mid.weight; LoHa, LoKr and the other LyCORIS algorithms are not read)");
    }
  }
  for (const auto& [down_key, mid] : mids) {
    const auto down = out.lora.tensors.find(down_key);
    if (down == out.lora.tensors.end()) {
      throw FormatError(reader.path() + ": '" + mid.first + "': has no lora_down.weight beside it");
    }
    down->second = fold_tucker(down->second, mid.second, reader.path(), out.file_keys[down_key], mid.first);
  }
  return out;
}

/// "unet." / "text_encoder." + module path + ".lora_A.weight" / ".lora_B.weight".
Conversion convert_peft(const SafetensorsReader& reader, const std::vector<std::string>& keys,
                        const std::map<std::string, LoraTarget>& targets) {
  Conversion out;
  std::map<std::string, PeftLoraConfig> configs;
  for (const auto& [key, value] : reader.metadata()) {
    if (key == kLoraAdapterMetadataKey) {
      configs = parse_peft_metadata(value, reader.path());
    } else if (key != "format") {
      out.lora.metadata[key] = value;  // anything else (kohya's ss_* carried along) is kept
    }
  }
  const LoraNameIndex names = lora_name_index(targets);
  // The name a component's module path has among the targets; empty when none.
  const auto name_of = [&](const std::string& component, const std::string& path) {
    const auto by_component = names.find(component);
    if (by_component == names.end()) return std::string();
    const auto found = by_component->second.find(path);
    return found == by_component->second.end() ? std::string() : found->second;
  };
  const bool two_encoders = names.count("text_encoder_2") > 0;
  for (const std::string& key : keys) {
    std::string component;
    for (const char* candidate : {"unet", "text_encoder", "text_encoder_2"}) {
      if (starts_with(key, std::string(candidate) + ".")) component = candidate;
    }
    std::string suffix;
    for (const char* candidate : {".lora_A.weight", ".lora_B.weight"}) {
      if (ends_with(key, candidate)) suffix = candidate;
    }
    if (component.empty() || suffix.empty()) {
      std::string reason = "not a diffusers LoRA key (expected unet.<module>.lora_A.weight / .lora_B.weight or "
                           "text_encoder.<module>...)";
      if (key.find("lora_magnitude_vector") != std::string::npos) {
        reason = "DoRA (weight-decomposed LoRA) rescales whole weights, which is not a LoRA delta";

      } else if (ends_with(key, ".lora_B.bias")) {
        reason = "a bias on lora_B (peft's lora_bias) is not a low-rank delta";
      }
      out.misfit(key, reason);
      continue;
    }
    std::string path = key.substr(component.size() + 1, key.size() - component.size() - 1 - suffix.size());
    std::string name = name_of(component, path);
    // transformers >= 5.6 names the text encoder's modules without "text_model.".
    if (component != "unet" && name.empty() && !name_of(component, "text_model." + path).empty()) {
      path = "text_model." + path;
      name = name_of(component, path);
    }
    if (name.empty()) {
      if (component == "text_encoder_2" && !two_encoders) {
        out.misfit(key, "a second text encoder: an SDXL adapter, not one for a model with one text encoder");
      } else if (!names.count(component)) {
        out.misfit(key, "the model has no " + component);
      } else {
        std::vector<std::string> paths;
        for (const auto& [known, name_unused] : names.at(component)) paths.push_back(known);
        const std::string closest = closest_match(path, paths);
        out.misfit(key, "no Linear or Conv2d of the " + component + " has the module path '" + path + "'" +
                            (closest.empty() ? std::string(" (an adapter for another architecture or model size?)")
                                             : " (closest: '" + closest + "')"));
      }
      continue;
    }
    const torch::Tensor tensor = reader.tensor(key);
    out.add(name + (suffix == ".lora_A.weight" ? kLoraDownSuffix : kLoraUpSuffix), key, tensor);
    if (suffix != ".lora_A.weight") continue;

    // The alpha: diffusers rebuilds LoraConfig from the metadata; without it, alpha = rank.
    const int64_t rank = tensor.dim() >= 1 ? tensor.size(0) : 0;
    double alpha = static_cast<double>(rank);
    const auto config = configs.find(component);
    if (config != configs.end()) {
      const PeftLoraConfig& c = config->second;
      if (c.use_dora) throw FormatError(reader.path() + ": " + kLoraAdapterMetadataKey + ": " + component +
                                        ".use_dora: DoRA (weight-decomposed LoRA) is not a LoRA delta");
      // Patterns are written against the module names of the model diffusers loads into: the
      // text encoder's may or may not start with "text_model.".
      const std::string alternate = starts_with(path, "text_model.") ? path.substr(11) : "";
      const int64_t* pattern_rank = peft_pattern_value(c.rank_pattern, path, alternate, reader.path());
      const int64_t config_rank = pattern_rank ? *pattern_rank : c.r;
      if (config_rank != rank) {
        throw FormatError(reader.path() + ": '" + key + "': rank " + std::to_string(rank) + ", but " +
                          kLoraAdapterMetadataKey + " gives " + component + " rank " + std::to_string(config_rank) +
                          " for " + path + (pattern_rank ? " (rank_pattern)" : " (r)"));
      }
      const double* pattern_alpha = peft_pattern_value(c.alpha_pattern, path, alternate, reader.path());
      alpha = pattern_alpha ? *pattern_alpha : c.lora_alpha;
      // rsLoRA scales by alpha / sqrt(rank); the same delta under alpha / rank.
      if (c.use_rslora) alpha *= std::sqrt(static_cast<double>(rank));
    }
    out.add(name + kLoraAlphaSuffix, key, torch::scalar_tensor(alpha, torch::kFloat32));
  }
  return out;
}

}  // namespace

LoraFile read_lora_file(const std::string& path, const std::map<std::string, LoraTarget>& targets) {
  if (!std::filesystem::is_regular_file(path)) throw FormatError(path + ": adapter file not found");
  const SafetensorsReader reader(path);
  std::vector<std::string> keys = reader.names();
  std::sort(keys.begin(), keys.end());
  if (keys.empty()) throw FormatError(path + ": holds no tensors, so no LoRA weights");
  const bool peft = std::any_of(keys.begin(), keys.end(), [](const std::string& key) {
    return key.find(".lora_A.") != std::string::npos || key.find(".lora_B.") != std::string::npos;
  });
  Conversion conversion = peft ? convert_peft(reader, keys, targets) : convert_kohya(reader, keys, targets);
  conversion.throw_if_misfits(path);
  // The shapes, ranks and values, named as in the file.
  lora_modules(conversion.lora, targets, path, &conversion.file_keys);
  return std::move(conversion.lora);
}

}  // namespace sdtrain

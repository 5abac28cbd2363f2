#include "plugins/models/stable_diffusion/weights/sd_weights.h"

#include <algorithm>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "framework/util/strings.h"
#include "plugins/models/stable_diffusion/modules/state_dict_loader.h"
#include "plugins/models/stable_diffusion/weights/sd_diffusers_config.h"
#include "plugins/models/stable_diffusion/weights/sd_open_clip_names.h"
#include "sdtrain/errors.h"
#include "sdtrain/log.h"

namespace sdtrain {
namespace {

const char* const kUNetPrefix = "model.diffusion_model.";
const char* const kVaePrefix = "first_stage_model.";
const char* const kClipPrefix = "cond_stage_model.";
const char* const kEmaPrefix = "model_ema.";
/// SD 2.x's text encoder (OpenCLIP's FrozenOpenCLIPEmbedder).
const char* const kSd2OpenClipPrefix = "cond_stage_model.model.";
/// SDXL's two text encoders (sgm's GeneralConditioner): CLIP ViT-L in transformers' names, then
/// OpenCLIP ViT-bigG.
const char* const kSdxlClipPrefix = "conditioner.embedders.0.";
const char* const kSdxlOpenClipPrefix = "conditioner.embedders.1.model.";

/// OpenCLIP tensors of an SD 2.x file that its text encoder never uses: SD 2 conditions on the
/// output of the penultimate block of ViT-H/14's 24, so block 23 is never run, and the
/// projection and logit scale belong to CLIP's contrastive head. diffusers' SD 2 text encoder has
/// 23 layers and no projection (its conversion drops the same names); sdtrain keeps them in
/// `extras` so that an original file converted to an original file keeps them.
bool is_unused_by_sd2(const std::string& open_clip_name) {
  return open_clip_name == "text_projection" || open_clip_name == "logit_scale" ||
         starts_with(open_clip_name, "transformer.resblocks.23.");
}

/// SDXL runs all of ViT-bigG and its projection (the pooled embedding); only the contrastive
/// logit scale is not part of CLIPTextModelWithProjection.
bool is_unused_by_sdxl(const std::string& open_clip_name) { return open_clip_name == "logit_scale"; }

/// An OpenCLIP text model (names relative to `prefix`) in transformers' names; the names `aside`
/// picks go to `extras` under their full original name, names without a row are unexpected.
NamedTensors read_open_clip(const NamedTensors& relative, const std::string& prefix,
                            bool (*aside)(const std::string&), SdWeights& weights, WeightIssues& issues) {
  NamedTensors kept;
  for (const auto& [name, tensor] : relative) {
    if (aside(name)) {
      weights.extras[prefix + name] = tensor;
    } else {
      kept[name] = tensor;
    }
  }
  RenameResult renamed = open_clip_to_transformers(kept);
  for (const auto& name : renamed.unmatched) issues.unexpected.push_back(prefix + name);
  return std::move(renamed.tensors);
}

/// A CLIP text model in transformers' names under `prefix` ("transformer.text_model.*").
NamedTensors read_clip(const NamedTensors& relative, const std::string& prefix, WeightIssues& issues) {
  RenameResult renamed = clip_original_to_diffusers(relative);
  for (const auto& name : renamed.unmatched) issues.unexpected.push_back(prefix + name);
  return std::move(renamed.tensors);
}

/// `renamed`'s tensors into `out` under `prefix`; its unmatched names into `unmatched` under
/// "<component>.".
void put_original(RenameResult renamed, const std::string& prefix, const std::string& component, RenameResult& out) {
  for (auto& [name, tensor] : renamed.tensors) out.tensors[prefix + name] = std::move(tensor);
  for (const auto& name : renamed.unmatched) out.unmatched.push_back(component + "." + name);
}

/// "<prefix><sub>* (no <what> in <source>)", the entry for a component absent from a file. Through
/// a stream: GCC 12's -Warray-bounds misreads the inlined concatenation of temporaries here.
std::string missing_component(const char* prefix, const char* sub, const char* what, const std::string& source) {
  std::ostringstream entry;
  entry << prefix << sub << "* (no " << what << " in " << source << ")";
  return entry.str();
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

/// Original-layout tensors that belong to no model: LatentDiffusion's DDPM schedule buffers and
/// the EMA callback's counters.
bool is_known_extra(const std::string& name) {
  static const std::set<std::string> names = {
      "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
      "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
      "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
      "logvar", "model_ema.decay", "model_ema.num_updates"};
  return names.count(name) != 0;
}

std::string shape_string(const torch::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

void list_into(std::ostringstream& out, const char* what, const std::vector<std::string>& names) {
  if (names.empty()) return;
  out << what << " (" << names.size() << "): ";
  for (std::size_t i = 0; i < names.size(); ++i) out << (i ? ", " : "") << names[i];
  out << "\n";
}

/// Renames an original component; reports unmatched names and empty rows.
NamedTensors to_diffusers(const NamedTensors& original, const std::vector<NameRow>& rows, const std::string& prefix,
                          const std::string& component, WeightIssues* issues) {
  RenameResult renamed = rename_component(original, rows, NameLayout::kOriginal);
  for (const auto& name : renamed.unmatched) issues->unexpected.push_back(prefix + name);
  for (const auto& row : renamed.empty_rows) issues->missing.push_back(component + "." + row + ".*");
  return std::move(renamed.tensors);
}

NamedTensors to_original(const NamedTensors& diffusers, const std::vector<NameRow>& rows, const std::string& prefix,
                         const std::string& component) {
  RenameResult renamed = rename_component(diffusers, rows, NameLayout::kDiffusers);
  if (!renamed.unmatched.empty()) {
    std::ostringstream out;
    list_into(out, (component + " tensors with no original name").c_str(), renamed.unmatched);
    throw FormatError(out.str());
  }
  NamedTensors out;
  for (auto& [name, tensor] : renamed.tensors) out[prefix + name] = tensor;
  return out;
}

std::vector<std::string> keys_of(const NamedTensors& map) {
  std::vector<std::string> keys;
  for (const auto& [name, tensor] : map) keys.push_back(name);
  return keys;
}

}  // namespace

bool text_encoder_is_open_clip(const SdWeights& weights) {
  const auto config = weights.configs.find("text_encoder");
  if (config == weights.configs.end()) return false;
  const auto json = nlohmann::json::parse(config->second, nullptr, /*allow_exceptions=*/false);
  return json.is_object() && json.value("hidden_act", std::string()) == "gelu";
}

RenameResult text_encoders_to_original(const SdWeights& weights) {
  RenameResult result;
  if (weights.is_sdxl()) {
    put_original(clip_diffusers_to_original(weights.text_encoder), kSdxlClipPrefix, "text_encoder", result);
    put_original(transformers_to_open_clip(weights.text_encoder_2), kSdxlOpenClipPrefix, "text_encoder_2", result);
  } else if (text_encoder_is_open_clip(weights)) {
    put_original(transformers_to_open_clip(weights.text_encoder), kSd2OpenClipPrefix, "text_encoder", result);
  } else {
    put_original(clip_diffusers_to_original(weights.text_encoder), kClipPrefix, "text_encoder", result);
  }
  return result;
}

std::string WeightIssues::describe() const {
  std::ostringstream out;
  list_into(out, "missing keys", missing);
  list_into(out, "unexpected keys", unexpected);
  list_into(out, "shape mismatches", mismatched);
  return out.str();
}

void WeightIssues::append(const WeightIssues& other) {
  missing.insert(missing.end(), other.missing.begin(), other.missing.end());
  unexpected.insert(unexpected.end(), other.unexpected.begin(), other.unexpected.end());
  mismatched.insert(mismatched.end(), other.mismatched.begin(), other.mismatched.end());
}

SdWeights sd_weights_from_original(const NamedTensors& state, bool use_ema, const std::string& source,
                                   WeightIssues* issues) {
  WeightIssues local;
  WeightIssues& out_issues = issues ? *issues : local;
  NamedTensors unet, vae, clip, open_clip, sdxl_clip, sdxl_open_clip, ema;
  SdWeights weights;
  for (const auto& [name, tensor] : state) {
    if (is_known_extra(name)) {
      weights.extras[name] = tensor;
    } else if (starts_with(name, kUNetPrefix)) {
      unet[name.substr(std::string(kUNetPrefix).size())] = tensor;
    } else if (starts_with(name, kVaePrefix)) {
      vae[name.substr(std::string(kVaePrefix).size())] = tensor;
    } else if (starts_with(name, kSd2OpenClipPrefix)) {
      open_clip[name.substr(std::string(kSd2OpenClipPrefix).size())] = tensor;
    } else if (starts_with(name, kClipPrefix)) {
      clip[name.substr(std::string(kClipPrefix).size())] = tensor;
    } else if (starts_with(name, kSdxlClipPrefix)) {
      sdxl_clip[name.substr(std::string(kSdxlClipPrefix).size())] = tensor;
    } else if (starts_with(name, kSdxlOpenClipPrefix)) {
      sdxl_open_clip[name.substr(std::string(kSdxlOpenClipPrefix).size())] = tensor;
    } else if (starts_with(name, kEmaPrefix)) {
      ema[name] = tensor;
    } else {
      out_issues.unexpected.push_back(name);
    }
  }
  if (unet.empty()) {
    out_issues.missing.push_back(missing_component(kUNetPrefix, "", "UNet", source));
  } else {
    auto rows = unet_name_rows(infer_unet_layout(keys_of(unet), NameLayout::kOriginal, source));
    NamedTensors ema_unet;
    std::vector<std::string> ema_missing;
    for (const auto& [name, tensor] : unet) {
      auto it = ema.find(ldm_ema_key(kUNetPrefix + name));
      if (it == ema.end()) {
        ema_missing.push_back(ldm_ema_key(kUNetPrefix + name));
      } else {
        ema_unet[name] = it->second;
        ema.erase(it);
      }
    }
    const bool has_ema = !ema_unet.empty();
    if (has_ema) out_issues.missing.insert(out_issues.missing.end(), ema_missing.begin(), ema_missing.end());
    if (use_ema && !has_ema) {
      log_line(LogLevel::WARNING, source + ": no model_ema.* weights; using the non-EMA UNet weights");
    }
    if (use_ema && has_ema) {
      weights.unet = to_diffusers(ema_unet, rows, kEmaPrefix, "unet", &out_issues);
    } else {
      weights.unet = to_diffusers(unet, rows, kUNetPrefix, "unet", &out_issues);
      if (has_ema) {
        WeightIssues ignored;  // the same names as the UNet's, reported once
        weights.unet_ema = to_diffusers(ema_unet, rows, kEmaPrefix, "unet_ema", &ignored);
      }
    }
  }
  for (const auto& [name, tensor] : ema) out_issues.unexpected.push_back(name);
  if (vae.empty()) {
    out_issues.missing.push_back(missing_component(kVaePrefix, "", "VAE", source));
  } else {
    auto rows = vae_name_rows(infer_vae_layout(keys_of(vae), NameLayout::kOriginal, source));
    weights.vae = to_diffusers(vae, rows, kVaePrefix, "vae", &out_issues);
  }
  if (!sdxl_clip.empty() || !sdxl_open_clip.empty()) {
    if (sdxl_clip.empty()) out_issues.missing.push_back(missing_component(kSdxlClipPrefix, "transformer.", "CLIP ViT-L", source));
    if (sdxl_open_clip.empty()) out_issues.missing.push_back(missing_component(kSdxlOpenClipPrefix, "", "OpenCLIP ViT-bigG", source));
    for (const auto& [name, tensor] : clip) out_issues.unexpected.push_back(kClipPrefix + name);
    for (const auto& [name, tensor] : open_clip) out_issues.unexpected.push_back(kSd2OpenClipPrefix + name);
    weights.text_encoder = read_clip(sdxl_clip, kSdxlClipPrefix, out_issues);
    weights.text_encoder_2 = read_open_clip(sdxl_open_clip, kSdxlOpenClipPrefix, is_unused_by_sdxl, weights, out_issues);
    if (!weights.text_encoder_2.empty()) {
      weights.configs["text_encoder_2"] = infer_clip_config_json(weights.text_encoder_2, "gelu");
    }
  } else if (!open_clip.empty()) {
    for (const auto& [name, tensor] : clip) out_issues.unexpected.push_back(kClipPrefix + name);
    weights.text_encoder = read_open_clip(open_clip, kSd2OpenClipPrefix, is_unused_by_sd2, weights, out_issues);
    // The layout tells the family: OpenCLIP's text transformer uses gelu where OpenAI's CLIP uses
    // quick_gelu, which no tensor shape shows.
    if (!weights.text_encoder.empty()) {
      weights.configs["text_encoder"] = infer_clip_config_json(weights.text_encoder, "gelu");
    }
  } else if (clip.empty()) {
    out_issues.missing.push_back(missing_component(kClipPrefix, "transformer.", "text encoder", source));
  } else {
    weights.text_encoder = read_clip(clip, kClipPrefix, out_issues);
  }
  return weights;
}

NamedTensors sd_weights_to_original(const SdWeights& weights) {
  NamedTensors out;
  if (!weights.unet.empty()) {
    auto rows = unet_name_rows(infer_unet_layout(keys_of(weights.unet), NameLayout::kDiffusers, "unet"));
    NamedTensors unet = to_original(weights.unet, rows, kUNetPrefix, "unet");
    out.insert(unet.begin(), unet.end());
    if (!weights.unet_ema.empty()) {
      for (auto& [name, tensor] : to_original(weights.unet_ema, rows, kUNetPrefix, "unet_ema")) {
        out[ldm_ema_key(name)] = tensor;
      }
    }
  }
  if (!weights.vae.empty()) {
    auto rows = vae_name_rows(infer_vae_layout(keys_of(weights.vae), NameLayout::kDiffusers, "vae"));
    NamedTensors vae = to_original(weights.vae, rows, kVaePrefix, "vae");
    out.insert(vae.begin(), vae.end());
  }
  if (!weights.text_encoder.empty() || weights.is_sdxl()) {
    RenameResult renamed = text_encoders_to_original(weights);
    if (!renamed.unmatched.empty()) {
      std::ostringstream msg;
      list_into(msg, "text encoder tensors with no original name", renamed.unmatched);
      throw FormatError(msg.str());
    }
    out.insert(renamed.tensors.begin(), renamed.tensors.end());
  }
  for (const auto& [name, tensor] : weights.extras) {
    if (weights.unet_ema.empty() && starts_with(name, kEmaPrefix)) continue;  // counters of a dropped EMA
    out.emplace(name, tensor);
  }
  return out;
}

WeightIssues match_state_dict(NamedTensors& actual, const std::map<std::string, torch::Tensor>& expected,
                              const std::string& prefix) {
  WeightIssues issues;
  for (auto& [name, tensor] : actual) {
    auto it = expected.find(name);
    if (it == expected.end()) {
      issues.unexpected.push_back(prefix + name);
      continue;
    }
    if (tensor.sizes() == it->second.sizes()) continue;
    if (tensor.numel() == it->second.numel() && tensor.dim() >= 2 && it->second.dim() >= 2 &&
        tensor.size(0) == it->second.size(0) && tensor.size(1) == it->second.size(1)) {
      bool trailing_ones = true;
      for (const auto& t : {tensor, it->second}) {
        for (int64_t d = 2; d < t.dim(); ++d) trailing_ones = trailing_ones && t.size(d) == 1;
      }
      if (trailing_ones) {
        tensor = tensor.reshape(it->second.sizes());
        continue;
      }
    }
    issues.mismatched.push_back(prefix + name + ": got " + shape_string(tensor) + " expected " +
                                shape_string(it->second));
  }
  for (const auto& [name, tensor] : expected) {
    if (actual.count(name) == 0) issues.missing.push_back(prefix + name);
  }
  return issues;
}

void cast_sd_weights(SdWeights& weights, torch::ScalarType dtype) {
  for (NamedTensors* map : {&weights.unet, &weights.vae, &weights.text_encoder, &weights.text_encoder_2, &weights.unet_ema}) {
    for (auto& [name, tensor] : *map) {
      if (tensor.is_floating_point()) tensor = tensor.to(dtype);
    }
  }
}

void load_component_exactly(torch::nn::Module& module, NamedTensors& tensors, const std::string& component,
                            const std::string& source) {
  const TensorMap expected = module_state_dict(module);
  WeightIssues issues = match_state_dict(tensors, expected, component + ".");
  auto& unexpected = issues.unexpected;
  unexpected.erase(std::remove_if(unexpected.begin(), unexpected.end(),
                                  [](const std::string& name) { return ends_with(name, "position_ids"); }),
                   unexpected.end());
  if (!issues.empty()) {
    throw FormatError(source + ": the " + component + " weights do not match its config:\n" + issues.describe());
  }
  TensorMap state;
  for (const auto& [name, tensor] : expected) state[name] = tensors.at(name);
  load_state_dict_strict(module, state, source);
}

}  // namespace sdtrain

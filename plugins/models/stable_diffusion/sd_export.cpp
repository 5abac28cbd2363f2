#include "plugins/models/stable_diffusion/sd_export.h"

#include <cstdio>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "plugins/models/stable_diffusion/modules/module_config.h"
#include "plugins/models/stable_diffusion/modules/state_dict_loader.h"
#include "plugins/models/stable_diffusion/weights/sd_diffusers_config.h"

namespace sdtrain {
namespace {

using nlohmann::ordered_json;

/// The module's tensors on the CPU, contiguous: the tensors themselves where they already are (a
/// copy of the full UNet would hold it twice: 3.4 GB more at the end of the recipe's run), copies
/// of those on a GPU or strided.
NamedTensors on_cpu(const torch::nn::Module& module) {
  NamedTensors out;
  torch::NoGradGuard no_grad;
  for (const auto& [name, tensor] : module_state_dict(module)) out[name] = tensor.detach().to(torch::kCPU).contiguous();
  return out;
}

ordered_json base_config(const std::map<std::string, std::string>& source_configs, const std::string& component,
                         const std::string& inferred) {
  const auto found = source_configs.find(component);
  return ordered_json::parse(found != source_configs.end() ? found->second : inferred);
}

/// A float option as the decimal it was written as (0.18215, not 0.18215000307559967).
double decimal(float value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.7g", static_cast<double>(value));
  return std::strtod(text, nullptr);
}

template <class Repeated>
ordered_json array_of(const Repeated& values) {
  ordered_json out = ordered_json::array();
  for (const auto& value : values) out.push_back(value);
  return out;
}

/// A per-block setting as diffusers writes it: one number when every block has the same, else
/// the list.
ordered_json per_block(const std::vector<int64_t>& values) {
  for (int64_t value : values) {
    if (value != values.front()) return array_of(values);
  }
  return values.front();
}

/// A value that diffusers writes as null when unset.
template <class T>
ordered_json or_null(bool set, const T& value) {
  return set ? ordered_json(value) : ordered_json(nullptr);
}

/// A text encoder's config.json: the source's (else shape-inferred), the option-defined fields
/// from `t`.
std::string text_encoder_config(const ClipTextConfig& t, const std::map<std::string, std::string>& source_configs,
                                const std::string& component, const NamedTensors& tensors) {
  ordered_json clip = base_config(source_configs, component, infer_clip_config_json(tensors, t.hidden_act()));
  clip["num_attention_heads"] = t.num_attention_heads();
  clip["hidden_act"] = t.hidden_act();
  clip["layer_norm_eps"] = decimal(t.layer_norm_eps());
  clip["eos_token_id"] = t.eos_token_id();
  if (t.projection_dim() > 0) {
    clip["projection_dim"] = t.projection_dim();
    clip["architectures"] = ordered_json::array({"CLIPTextModelWithProjection"});
  }
  return clip.dump(2) + "\n";
}

}  // namespace

SdWeights weights_for_export(const SdNetworks& networks, const StableDiffusionOptions& options,
                             const std::map<std::string, std::string>& source_configs,
                             const std::string& tokenizer_dir, const std::string& tokenizer_2_dir) {
  SdWeights weights;
  weights.unet = on_cpu(*networks.unet);
  weights.vae = on_cpu(*networks.vae);
  weights.text_encoder = on_cpu(*networks.text_encoder);
  weights.tokenizer_dir = tokenizer_dir;
  if (networks.text_encoder_2) {
    weights.text_encoder_2 = on_cpu(*networks.text_encoder_2);
    weights.tokenizer_2_dir = tokenizer_2_dir;
  }

  const UNet2DConditionConfig& u = options.unet();
  ordered_json unet = base_config(source_configs, "unet", infer_unet_config_json(weights.unet));
  unet["sample_size"] = u.sample_size();
  const ResolvedUNetLayout layout = resolve_unet_layout(u);
  unet["attention_head_dim"] = per_block(layout.heads);
  unet["norm_num_groups"] = u.norm_num_groups();
  unet["norm_eps"] = decimal(u.norm_eps());
  unet["flip_sin_to_cos"] = u.flip_sin_to_cos();
  unet["freq_shift"] = decimal(u.freq_shift());
  unet["use_linear_projection"] = u.use_linear_projection();
  unet["transformer_layers_per_block"] = per_block(layout.transformer_layers);
  unet["upcast_attention"] = u.upcast_attention();
  unet["addition_embed_type"] = or_null(layout.text_time_embedding, u.addition_embed_type());
  unet["addition_time_embed_dim"] = or_null(layout.text_time_embedding, u.addition_time_embed_dim());
  unet["projection_class_embeddings_input_dim"] =
      or_null(layout.text_time_embedding, u.projection_class_embeddings_input_dim());
  unet["mid_block_scale_factor"] = decimal(u.mid_block_scale_factor());
  if (u.down_block_types_size() > 0) unet["down_block_types"] = array_of(u.down_block_types());
  if (u.up_block_types_size() > 0) unet["up_block_types"] = array_of(u.up_block_types());
  weights.configs["unet"] = unet.dump(2) + "\n";

  const AutoencoderKLConfig& v = options.vae();
  ordered_json vae = base_config(source_configs, "vae", infer_vae_config_json(weights.vae));
  vae["norm_num_groups"] = v.norm_num_groups();
  vae["sample_size"] = v.sample_size();
  vae["scaling_factor"] = decimal(v.scaling_factor());
  weights.configs["vae"] = vae.dump(2) + "\n";

  weights.configs["text_encoder"] =
      text_encoder_config(options.text_encoder(), source_configs, "text_encoder", weights.text_encoder);
  if (networks.text_encoder_2) {
    weights.configs["text_encoder_2"] =
        text_encoder_config(options.text_encoder_2(), source_configs, "text_encoder_2", weights.text_encoder_2);
  }

  const auto scheduler = source_configs.find("scheduler");
  if (scheduler != source_configs.end()) weights.configs["scheduler"] = scheduler->second;
  return weights;
}

}  // namespace sdtrain

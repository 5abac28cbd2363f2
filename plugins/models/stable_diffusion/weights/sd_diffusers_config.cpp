#include "plugins/models/stable_diffusion/weights/sd_diffusers_config.h"

#include <set>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

using nlohmann::ordered_json;

const char* const kDiffusersVersion = "0.42.1";

const torch::Tensor& need(const NamedTensors& map, const std::string& name, const std::string& component) {
  auto it = map.find(name);
  if (it == map.end()) throw FormatError(component + ": cannot infer the config without tensor " + name);
  return it->second;
}

std::vector<std::string> keys_of(const NamedTensors& map) {
  std::vector<std::string> keys;
  for (const auto& [name, tensor] : map) keys.push_back(name);
  return keys;
}

/// Transformer blocks in the first attention of `prefix` (a down block): 1 when there is none.
int64_t transformer_depth(const NamedTensors& unet, const std::string& prefix) {
  const std::string blocks = prefix + ".attentions.0.transformer_blocks.";
  std::set<std::string> indices;
  for (auto it = unet.lower_bound(blocks); it != unet.end() && it->first.compare(0, blocks.size(), blocks) == 0; ++it) {
    indices.insert(it->first.substr(blocks.size(), it->first.find('.', blocks.size()) - blocks.size()));
  }
  return std::max<int64_t>(1, static_cast<int64_t>(indices.size()));
}

}  // namespace

std::string infer_unet_config_json(const NamedTensors& unet) {
  const UNetLayout layout = infer_unet_layout(keys_of(unet), NameLayout::kDiffusers, "unet");
  ordered_json block_out = ordered_json::array(), down = ordered_json::array(), up = ordered_json::array();
  ordered_json heads_of_64 = ordered_json::array(), depths = ordered_json::array();
  bool deep = false;
  int64_t cross_dim = 768;
  for (int b = 0; b < layout.levels; ++b) {
    const std::string p = "down_blocks." + std::to_string(b);
    const int64_t channels = need(unet, p + ".resnets.0.conv1.weight", "unet").size(0);
    block_out.push_back(channels);
    heads_of_64.push_back(std::max<int64_t>(1, channels / 64));
    depths.push_back(transformer_depth(unet, p));
    deep = deep || depths.back().get<int64_t>() > 1;
    down.push_back(layout.down_attention[b] ? "CrossAttnDownBlock2D" : "DownBlock2D");
    up.push_back(layout.up_attention[b] ? "CrossAttnUpBlock2D" : "UpBlock2D");
    if (layout.down_attention[b]) {
      cross_dim = need(unet, p + ".attentions.0.transformer_blocks.0.attn2.to_k.weight", "unet").size(1);
    }
  }
  const auto& proj_in = unet.find("mid_block.attentions.0.proj_in.weight");
  const bool linear_projection = proj_in != unet.end() && proj_in->second.dim() == 2;
  // Linear projections are SD 2.x's and SDXL's, whose heads are 64 wide; SD 2.1 computes attention
  // scores in float32; SD v1 has 8 heads in every block.
  ordered_json config = {
      {"_class_name", "UNet2DConditionModel"},
      {"_diffusers_version", kDiffusersVersion},
      {"act_fn", "silu"},
      {"attention_head_dim", linear_projection ? heads_of_64 : ordered_json(8)},
      {"block_out_channels", block_out},
      {"center_input_sample", false},
      {"cross_attention_dim", cross_dim},
      {"down_block_types", down},
      {"downsample_padding", 1},
      {"flip_sin_to_cos", true},
      {"freq_shift", 0},
      {"in_channels", need(unet, "conv_in.weight", "unet").size(1)},
      {"layers_per_block", layout.layers_per_block},
      {"mid_block_scale_factor", 1},
      {"norm_eps", 1e-05},
      {"norm_num_groups", 32},
      {"out_channels", need(unet, "conv_out.weight", "unet").size(0)},
      {"sample_size", 64},
      {"up_block_types", up},
      {"upcast_attention", linear_projection && !layout.text_time_embedding},
      {"use_linear_projection", linear_projection},
  };
  if (deep) config["transformer_layers_per_block"] = depths;
  if (layout.text_time_embedding) {
    // SDXL: pooled text embedding + 6 sinusoidal size embeddings of addition_time_embed_dim each;
    // 256 is SDXL's (the width of each is not in any shape: only their sum is).
    config["addition_embed_type"] = "text_time";
    config["addition_time_embed_dim"] = 256;
    config["projection_class_embeddings_input_dim"] = need(unet, "add_embedding.linear_1.weight", "unet").size(1);
  }
  return config.dump(2) + "\n";
}

std::string infer_vae_config_json(const NamedTensors& vae) { return infer_vae_config_json(vae, 0.18215); }

std::string infer_vae_config_json(const NamedTensors& vae, double scaling_factor) {
  const VaeLayout layout = infer_vae_layout(keys_of(vae), NameLayout::kDiffusers, "vae");
  ordered_json block_out = ordered_json::array(), down = ordered_json::array(), up = ordered_json::array();
  for (int b = 0; b < layout.levels; ++b) {
    block_out.push_back(need(vae, "encoder.down_blocks." + std::to_string(b) + ".resnets.0.conv1.weight", "vae").size(0));
    down.push_back("DownEncoderBlock2D");
    up.push_back("UpDecoderBlock2D");
  }
  ordered_json config = {
      {"_class_name", "AutoencoderKL"},
      {"_diffusers_version", kDiffusersVersion},
      {"act_fn", "silu"},
      {"block_out_channels", block_out},
      {"down_block_types", down},
      {"in_channels", need(vae, "encoder.conv_in.weight", "vae").size(1)},
      {"latent_channels", need(vae, "post_quant_conv.weight", "vae").size(0)},
      {"layers_per_block", layout.layers_per_block},
      {"norm_num_groups", 32},
      {"out_channels", need(vae, "decoder.conv_out.weight", "vae").size(0)},
      {"sample_size", 512},
      {"scaling_factor", scaling_factor},
      {"up_block_types", up},
  };
  return config.dump(2) + "\n";
}

std::string infer_clip_config_json(const NamedTensors& te, const std::string& hidden_act) {
  const auto& token = need(te, "text_model.embeddings.token_embedding.weight", "text_encoder");
  const auto& position = need(te, "text_model.embeddings.position_embedding.weight", "text_encoder");
  std::set<std::string> layers;
  for (const auto& [name, tensor] : te) {
    const std::string p = "text_model.encoder.layers.";
    if (name.compare(0, p.size(), p) == 0) layers.insert(name.substr(p.size(), name.find('.', p.size()) - p.size()));
  }
  const int64_t hidden = token.size(1);
  ordered_json config = {
      {"architectures", ordered_json::array({"CLIPTextModel"})},
      {"attention_dropout", 0.0},
      {"bos_token_id", token.size(0) - 2},
      {"dropout", 0.0},
      {"eos_token_id", token.size(0) - 1},
      {"hidden_act", hidden_act},
      {"hidden_size", hidden},
      {"initializer_factor", 1.0},
      {"initializer_range", 0.02},
      {"intermediate_size", need(te, "text_model.encoder.layers.0.mlp.fc1.weight", "text_encoder").size(0)},
      {"layer_norm_eps", 1e-05},
      {"max_position_embeddings", position.size(0)},
      {"model_type", "clip_text_model"},
      {"num_attention_heads", std::max<int64_t>(1, hidden / 64)},
      {"num_hidden_layers", static_cast<int64_t>(layers.size())},
      {"pad_token_id", 1},
      {"projection_dim", 768},
      {"vocab_size", token.size(0)},
  };
  const auto projection = te.find("text_projection.weight");
  if (projection != te.end()) {  // SDXL's second encoder: CLIPTextModelWithProjection
    config["architectures"] = ordered_json::array({"CLIPTextModelWithProjection"});
    config["projection_dim"] = projection->second.size(0);
  }
  return config.dump(2) + "\n";
}

std::string infer_clip_config_json(const NamedTensors& te) { return infer_clip_config_json(te, "quick_gelu"); }

std::string sd_v1_scheduler_config_json() {
  ordered_json config = {
      {"_class_name", "PNDMScheduler"},
      {"_diffusers_version", kDiffusersVersion},
      {"beta_end", 0.012},
      {"beta_schedule", "scaled_linear"},
      {"beta_start", 0.00085},
      {"clip_sample", false},
      {"num_train_timesteps", 1000},
      {"prediction_type", "epsilon"},
      {"set_alpha_to_one", false},
      {"skip_prk_steps", true},
      {"steps_offset", 1},
      {"timestep_spacing", "leading"},
      {"trained_betas", nullptr},
  };
  return config.dump(2) + "\n";
}

std::string scheduler_config_with_prediction_type(const std::string& scheduler_json, const std::string& prediction_type,
                                                  const std::string& what) {
  if (prediction_type != "epsilon" && prediction_type != "v_prediction" && prediction_type != "sample") {
    throw ConfigError(what + " '" + prediction_type + "': expected epsilon, v_prediction or sample");
  }
  ordered_json config = ordered_json::parse(scheduler_json.empty() ? sd_v1_scheduler_config_json() : scheduler_json,
                                            nullptr, /*allow_exceptions=*/false);
  if (!config.is_object()) throw FormatError(what + ": the scheduler config is not a JSON object");
  config["prediction_type"] = prediction_type;
  return config.dump(2) + "\n";
}

bool prediction_type_is_known(const SdWeights& weights) {
  return weights.configs.count("scheduler") != 0 || !text_encoder_is_open_clip(weights);
}

std::string sdxl_scheduler_config_json() {
  ordered_json config = {
      {"_class_name", "EulerDiscreteScheduler"},
      {"_diffusers_version", kDiffusersVersion},
      {"beta_end", 0.012},
      {"beta_schedule", "scaled_linear"},
      {"beta_start", 0.00085},
      {"clip_sample", false},
      {"interpolation_type", "linear"},
      {"num_train_timesteps", 1000},
      {"prediction_type", "epsilon"},
      {"sample_max_value", 1.0},
      {"set_alpha_to_one", false},
      {"skip_prk_steps", true},
      {"steps_offset", 1},
      {"timestep_spacing", "leading"},
      {"trained_betas", nullptr},
      {"use_karras_sigmas", false},
  };
  return config.dump(2) + "\n";
}

std::string sdxl_model_index_json(bool with_tokenizers) {
  const ordered_json none = ordered_json::array({nullptr, nullptr});
  const ordered_json tokenizer = ordered_json::array({"transformers", "CLIPTokenizer"});
  ordered_json config = {
      {"_class_name", "StableDiffusionXLPipeline"},
      {"_diffusers_version", kDiffusersVersion},
      {"feature_extractor", none},
      {"force_zeros_for_empty_prompt", true},
      {"image_encoder", none},
      {"scheduler", ordered_json::array({"diffusers", "EulerDiscreteScheduler"})},
      {"text_encoder", ordered_json::array({"transformers", "CLIPTextModel"})},
      {"text_encoder_2", ordered_json::array({"transformers", "CLIPTextModelWithProjection"})},
      {"tokenizer", with_tokenizers ? tokenizer : none},
      {"tokenizer_2", with_tokenizers ? tokenizer : none},
      {"unet", ordered_json::array({"diffusers", "UNet2DConditionModel"})},
      {"vae", ordered_json::array({"diffusers", "AutoencoderKL"})},
  };
  return config.dump(2) + "\n";
}

std::string component_config_json(const SdWeights& weights, const std::string& component) {
  const auto carried = weights.configs.find(component);
  if (carried != weights.configs.end()) return carried->second;
  if (component == "unet") return infer_unet_config_json(weights.unet);
  if (component == "vae") return infer_vae_config_json(weights.vae, weights.is_sdxl() ? 0.13025 : 0.18215);
  if (component == "text_encoder") return infer_clip_config_json(weights.text_encoder);
  if (component == "text_encoder_2") return infer_clip_config_json(weights.text_encoder_2, "gelu");
  if (component == "scheduler") return weights.is_sdxl() ? sdxl_scheduler_config_json() : sd_v1_scheduler_config_json();
  throw std::invalid_argument("component_config_json: unknown component " + component);
}

std::string sd_model_index_json(bool with_tokenizer) {
  const ordered_json none = ordered_json::array({nullptr, nullptr});
  ordered_json config = {
      {"_class_name", "StableDiffusionPipeline"},
      {"_diffusers_version", kDiffusersVersion},
      {"feature_extractor", none},
      {"image_encoder", none},
      {"requires_safety_checker", false},
      {"safety_checker", none},
      {"scheduler", ordered_json::array({"diffusers", "PNDMScheduler"})},
      {"text_encoder", ordered_json::array({"transformers", "CLIPTextModel"})},
      {"tokenizer", with_tokenizer ? ordered_json::array({"transformers", "CLIPTokenizer"}) : none},
      {"unet", ordered_json::array({"diffusers", "UNet2DConditionModel"})},
      {"vae", ordered_json::array({"diffusers", "AutoencoderKL"})},
  };
  return config.dump(2) + "\n";
}

}  // namespace sdtrain

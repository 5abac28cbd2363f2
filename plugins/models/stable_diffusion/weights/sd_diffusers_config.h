#pragma once
/// diffusers config.json texts for SD v1 and 2.x components, inferred from tensor shapes where a
/// source did not carry its own. Values no shape reveals take the family's values: a UNet with
/// linear proj_in/proj_out (SD 2.x) gets 64-wide heads per block and upcast_attention (as SD 2.1),
/// one with 1x1 convolutions SD v1's 8 heads; norm_num_groups 32, sample_size 64 / 512,
/// scaling_factor 0.18215, CLIP heads = hidden / 64.
#include <string>

#include "plugins/models/stable_diffusion/weights/sd_weights.h"

namespace sdtrain {

/// UNet2DConditionModel config: in/out channels, block_out_channels, layers_per_block,
/// cross_attention_dim, down/up block types, transformer_layers_per_block (when a block is deeper
/// than 1), and SDXL's text_time embedding (add_embedding) from the diffusers-named `unet`.
std::string infer_unet_config_json(const NamedTensors& unet);
/// AutoencoderKL config: in/out/latent channels, block_out_channels, layers_per_block, and
/// `scaling_factor` (SD v1/2.x 0.18215, SDXL 0.13025: no weight tells).
std::string infer_vae_config_json(const NamedTensors& vae, double scaling_factor);
/// The same with SD v1's scaling factor.
std::string infer_vae_config_json(const NamedTensors& vae);
/// CLIPTextModel config (CLIPTextModelWithProjection with its projection_dim when the tensors
/// hold text_projection.weight): vocab, hidden, intermediate, layers, positions; `hidden_act` is
/// "quick_gelu" for OpenAI's CLIP (SD v1), "gelu" for OpenCLIP (SD 2.x), which no shape shows.
std::string infer_clip_config_json(const NamedTensors& text_encoder, const std::string& hidden_act);
/// The same with SD v1's quick_gelu.
std::string infer_clip_config_json(const NamedTensors& text_encoder);
/// The SD v1 PNDMScheduler config (scaled_linear 0.00085..0.012, 1000 steps, skip_prk_steps).
std::string sd_v1_scheduler_config_json();
/// SDXL base's EulerDiscreteScheduler config (scaled_linear 0.00085..0.012, leading spacing).
std::string sdxl_scheduler_config_json();
/// model_index.json of a StableDiffusionXLPipeline (two text encoders and tokenizers);
/// `with_tokenizers` false writes both tokenizer entries as [null, null].
std::string sdxl_model_index_json(bool with_tokenizers);

/// The config.json text of `component` ("unet", "vae", "text_encoder", "text_encoder_2",
/// "scheduler"): the one `weights` carry, else inferred from the tensors and the family (SDXL:
/// scaling factor 0.13025, a gelu second text encoder, the Euler scheduler). std::invalid_argument
/// for another component name.
std::string component_config_json(const SdWeights& weights, const std::string& component);

/// `scheduler_json` (the SD v1 scheduler config when "") with its prediction_type set to
/// `prediction_type`: "epsilon", "v_prediction" or "sample" (ConfigError naming `what` and the
/// three otherwise; FormatError for a scheduler_json that is not a JSON object).
std::string scheduler_config_with_prediction_type(const std::string& scheduler_json, const std::string& prediction_type,
                                                  const std::string& what);

/// Whether `weights` say what their UNet predicts: a scheduler config came with them, or the
/// family has one answer (SD v1: noise). An SD 2.x original single file does not: the 512 px base
/// models predict noise, the 768 px ones v, with the same tensors.
bool prediction_type_is_known(const SdWeights& weights);

/// model_index.json of a StableDiffusionPipeline without safety checker / feature extractor;
/// `with_tokenizer` false writes the tokenizer entry as [null, null].
std::string sd_model_index_json(bool with_tokenizer);

}  // namespace sdtrain

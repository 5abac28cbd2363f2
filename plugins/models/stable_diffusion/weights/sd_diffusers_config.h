#pragma once
/// diffusers config.json texts for SD v1 components, inferred from tensor shapes where a source
/// did not carry its own. Values no shape reveals take the SD v1 values (attention_head_dim 8,
/// norm_num_groups 32, sample_size 64 / 512, scaling_factor 0.18215, CLIP heads = hidden / 64).
#include <string>

#include "plugins/models/stable_diffusion/weights/sd_name_table.h"

namespace sdtrain {

/// UNet2DConditionModel config: in/out channels, block_out_channels, layers_per_block,
/// cross_attention_dim, down/up block types from the diffusers-named `unet`.
std::string infer_unet_config_json(const NamedTensors& unet);
/// AutoencoderKL config: in/out/latent channels, block_out_channels, layers_per_block.
std::string infer_vae_config_json(const NamedTensors& vae);
/// CLIPTextModel config: vocab, hidden, intermediate, layers, positions.
std::string infer_clip_config_json(const NamedTensors& text_encoder);
/// The SD v1 PNDMScheduler config (scaled_linear 0.00085..0.012, 1000 steps, skip_prk_steps).
std::string sd_v1_scheduler_config_json();
/// model_index.json of a StableDiffusionPipeline without safety checker / feature extractor;
/// `with_tokenizer` false writes the tokenizer entry as [null, null].
std::string sd_model_index_json(bool with_tokenizer);

}  // namespace sdtrain

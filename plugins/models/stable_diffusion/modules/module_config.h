#pragma once
/// Resolution of the SD v1 architecture configs (proto/sd_modules.proto): proto2 repeated
/// fields have no defaults, so an empty list means the SD v1 value. Every function validates
/// what the networks rely on and throws ConfigError naming the field.
#include <string>
#include <vector>

#include "plugins/models/stable_diffusion/sd_modules.pb.h"

namespace sdtrain {

/// UNet block layout after defaults; sizes in channels.
struct ResolvedUNetLayout {
  std::vector<int64_t> block_out_channels;   ///< per down block (SD v1: 320,640,1280,1280)
  std::vector<std::string> down_block_types; ///< "CrossAttnDownBlock2D" | "DownBlock2D"
  std::vector<std::string> up_block_types;   ///< "UpBlock2D" | "CrossAttnUpBlock2D"
  std::vector<int64_t> heads;                ///< attention heads per down block (SD v1: 8 each)
  std::vector<int64_t> transformer_layers;   ///< BasicTransformerBlocks per down block (SD v1: 1)
  /// With addition_embed_type "text_time" (SDXL's micro-conditioning embedding).
  bool text_time_embedding = false;
};

/// Fills SD v1 defaults into the repeated fields, spreads one-value per-block settings
/// (attention_head_dim, transformer_layers_per_block) over the blocks and validates sizes
/// (positive, channel counts divisible by norm_num_groups and by the block's head count, one block
/// type and at most one per-block value per block, a known addition_embed_type).
/// @throws ConfigError naming the offending field.
ResolvedUNetLayout resolve_unet_layout(const UNet2DConditionConfig& config);

/// VAE block channels (SD v1: 128,256,512,512), validated against norm_num_groups.
/// @throws ConfigError naming the offending field.
std::vector<int64_t> resolve_vae_block_out_channels(const AutoencoderKLConfig& config);

/// Validates the CLIP text config (hidden divisible by heads, a known activation).
/// @throws ConfigError naming the offending field.
void validate_clip_text_config(const ClipTextConfig& config);

}  // namespace sdtrain

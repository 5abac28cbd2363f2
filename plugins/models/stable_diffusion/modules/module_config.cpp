#include "plugins/models/stable_diffusion/modules/module_config.h"

#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw ConfigError(message);
}

/// A per-block setting: empty = `fallback` for every block, one value = that value for every block,
/// else exactly one per block; each > 0.
std::vector<int64_t> per_block(const google::protobuf::RepeatedField<int32_t>& values, size_t blocks,
                               int64_t fallback, const std::string& field) {
  std::vector<int64_t> resolved(values.begin(), values.end());
  if (resolved.empty()) resolved.push_back(fallback);
  if (resolved.size() == 1) resolved.assign(blocks, resolved.front());
  require(resolved.size() == blocks, "UNet2DConditionConfig." + field + ": expected one value or " +
                                         std::to_string(blocks) + " (one per block_out_channels), got " +
                                         std::to_string(values.size()));
  for (int64_t v : resolved) {
    require(v > 0, "UNet2DConditionConfig." + field + ": every value must be > 0, got " + std::to_string(v));
  }
  return resolved;
}

}  // namespace

ResolvedUNetLayout resolve_unet_layout(const UNet2DConditionConfig& config) {
  ResolvedUNetLayout layout;
  if (config.block_out_channels_size() == 0) {
    layout.block_out_channels = {320, 640, 1280, 1280};
  } else {
    layout.block_out_channels.assign(config.block_out_channels().begin(),
                                     config.block_out_channels().end());
  }
  const size_t n = layout.block_out_channels.size();
  if (config.down_block_types_size() == 0) {
    layout.down_block_types.assign(n, "CrossAttnDownBlock2D");
    layout.down_block_types.back() = "DownBlock2D";
  } else {
    layout.down_block_types.assign(config.down_block_types().begin(),
                                   config.down_block_types().end());
  }
  if (config.up_block_types_size() == 0) {
    layout.up_block_types.assign(n, "CrossAttnUpBlock2D");
    layout.up_block_types.front() = "UpBlock2D";
  } else {
    layout.up_block_types.assign(config.up_block_types().begin(), config.up_block_types().end());
  }
  require(layout.down_block_types.size() == n,
          "UNet2DConditionConfig.down_block_types: expected " + std::to_string(n) +
              " entries (one per block_out_channels), got " +
              std::to_string(layout.down_block_types.size()));
  require(layout.up_block_types.size() == n,
          "UNet2DConditionConfig.up_block_types: expected " + std::to_string(n) +
              " entries (one per block_out_channels), got " +
              std::to_string(layout.up_block_types.size()));
  for (const auto& t : layout.down_block_types) {
    require(t == "CrossAttnDownBlock2D" || t == "DownBlock2D",
            "UNet2DConditionConfig.down_block_types: unknown block type '" + t +
                "' (expected CrossAttnDownBlock2D or DownBlock2D)");
  }
  for (const auto& t : layout.up_block_types) {
    require(t == "CrossAttnUpBlock2D" || t == "UpBlock2D",
            "UNet2DConditionConfig.up_block_types: unknown block type '" + t +
                "' (expected CrossAttnUpBlock2D or UpBlock2D)");
  }
  require(config.norm_num_groups() > 0, "UNet2DConditionConfig.norm_num_groups: must be > 0");
  layout.heads = per_block(config.attention_head_dim(), n, 8, "attention_head_dim");
  layout.transformer_layers =
      per_block(config.transformer_layers_per_block(), n, 1, "transformer_layers_per_block");
  require(config.layers_per_block() > 0, "UNet2DConditionConfig.layers_per_block: must be > 0");
  require(config.addition_embed_type().empty() || config.addition_embed_type() == "text_time",
          "UNet2DConditionConfig.addition_embed_type: unknown type '" + config.addition_embed_type() +
              "' (expected \"\" or \"text_time\")");
  layout.text_time_embedding = config.addition_embed_type() == "text_time";
  if (layout.text_time_embedding) {
    require(config.addition_time_embed_dim() > 0,
            "UNet2DConditionConfig.addition_time_embed_dim: must be > 0 with addition_embed_type text_time");
    require(config.projection_class_embeddings_input_dim() > 6 * config.addition_time_embed_dim(),
            "UNet2DConditionConfig.projection_class_embeddings_input_dim: must be the pooled text width + 6 x "
            "addition_time_embed_dim (" +
                std::to_string(6 * config.addition_time_embed_dim()) + "), got " +
                std::to_string(config.projection_class_embeddings_input_dim()));
  }
  require(config.in_channels() > 0 && config.out_channels() > 0,
          "UNet2DConditionConfig.in_channels/out_channels: must be > 0");
  require(config.cross_attention_dim() > 0,
          "UNet2DConditionConfig.cross_attention_dim: must be > 0");
  for (size_t i = 0; i < n; ++i) {
    const int64_t c = layout.block_out_channels[i];
    require(c > 0 && c % config.norm_num_groups() == 0,
            "UNet2DConditionConfig.block_out_channels: " + std::to_string(c) +
                " is not a positive multiple of norm_num_groups " +
                std::to_string(config.norm_num_groups()));
    require(c % layout.heads[i] == 0, "UNet2DConditionConfig.block_out_channels: " + std::to_string(c) +
                                          " is not divisible by the head count attention_head_dim " +
                                          std::to_string(layout.heads[i]) + " of block " + std::to_string(i));
  }
  return layout;
}

std::vector<int64_t> resolve_vae_block_out_channels(const AutoencoderKLConfig& config) {
  std::vector<int64_t> channels;
  if (config.block_out_channels_size() == 0) {
    channels = {128, 256, 512, 512};
  } else {
    channels.assign(config.block_out_channels().begin(), config.block_out_channels().end());
  }
  require(config.norm_num_groups() > 0, "AutoencoderKLConfig.norm_num_groups: must be > 0");
  require(config.layers_per_block() > 0, "AutoencoderKLConfig.layers_per_block: must be > 0");
  require(config.latent_channels() > 0, "AutoencoderKLConfig.latent_channels: must be > 0");
  require(config.in_channels() > 0 && config.out_channels() > 0,
          "AutoencoderKLConfig.in_channels/out_channels: must be > 0");
  for (int64_t c : channels) {
    require(c > 0 && c % config.norm_num_groups() == 0,
            "AutoencoderKLConfig.block_out_channels: " + std::to_string(c) +
                " is not a positive multiple of norm_num_groups " +
                std::to_string(config.norm_num_groups()));
  }
  return channels;
}

void validate_clip_text_config(const ClipTextConfig& config) {
  require(config.hidden_size() > 0 && config.num_attention_heads() > 0 &&
              config.hidden_size() % config.num_attention_heads() == 0,
          "ClipTextConfig.hidden_size: " + std::to_string(config.hidden_size()) +
              " must be a positive multiple of num_attention_heads " +
              std::to_string(config.num_attention_heads()));
  require(config.vocab_size() > 0, "ClipTextConfig.vocab_size: must be > 0");
  require(config.intermediate_size() > 0, "ClipTextConfig.intermediate_size: must be > 0");
  require(config.num_hidden_layers() > 0, "ClipTextConfig.num_hidden_layers: must be > 0");
  require(config.max_position_embeddings() > 0,
          "ClipTextConfig.max_position_embeddings: must be > 0");
  require(config.projection_dim() >= 0, "ClipTextConfig.projection_dim: must be >= 0 (0 = no projection)");
  require(config.hidden_act() == "quick_gelu" || config.hidden_act() == "gelu",
          "ClipTextConfig.hidden_act: unknown activation '" + config.hidden_act() +
              "' (expected quick_gelu or gelu)");
}

}  // namespace sdtrain

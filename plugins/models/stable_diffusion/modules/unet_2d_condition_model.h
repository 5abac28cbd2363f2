#pragma once
/// diffusers UNet2DConditionModel for Stable Diffusion v1, 2.x and XL (and tiny test variants), built
/// from a UNet2DConditionConfig. named_parameters() keys equal the diffusers state-dict keys
/// (conv_in.weight, time_embedding.linear_1.weight, down_blocks.0.attentions.0.
/// transformer_blocks.0.attn1.to_q.weight, mid_block.resnets.0.norm1.weight, ...).
///
/// Numerics: GroupNorm / LayerNorm / softmax are dispatcher ops, so under autocast (CUDA fp16 /
/// bf16) they run in float32 exactly as in PyTorch; the timestep embedding is computed in
/// float32 and cast to the sample dtype as diffusers does.
#include <vector>

#include <torch/torch.h>

#include "plugins/models/stable_diffusion/modules/timestep_embedding.h"
#include "plugins/models/stable_diffusion/modules/unet_down_block.h"
#include "plugins/models/stable_diffusion/modules/unet_mid_block.h"
#include "plugins/models/stable_diffusion/modules/unet_up_block.h"
#include "plugins/models/stable_diffusion/sd_modules.pb.h"

namespace sdtrain {

/// SDXL's extra conditioning (addition_embed_type "text_time"); both undefined for SD v1 / 2.x.
struct UNetAddedConditions {
  torch::Tensor text_embeds;  ///< [B, pooled width]: the second text encoder's projected pooled output
  torch::Tensor time_ids;     ///< [B, 6]: original height, width, crop top, left, target height, width
};

class UNet2DConditionModelImpl : public torch::nn::Module {
 public:
  /// Builds the network; an empty config is SD v1.
  /// @throws ConfigError when the config is inconsistent (see resolve_unet_layout).
  explicit UNet2DConditionModelImpl(const UNet2DConditionConfig& config = {});

  /// sample [B, in_channels, h, w] (latents), timestep [B] or a scalar tensor (broadcast to B;
  /// integer or float), encoder_hidden_states [B, S, cross_attention_dim] -> [B, out_channels,
  /// h, w] in the sample's dtype. h, w need not be multiples of 2^(blocks-1).
  torch::Tensor forward(const torch::Tensor& sample, const torch::Tensor& timestep,
                        const torch::Tensor& encoder_hidden_states);
  /// As above, with SDXL's added conditions: with addition_embed_type "text_time" the time
  /// embedding gains add_embedding(cat(text_embeds, sinusoidal(time_ids))) as diffusers computes
  /// it (both required then, and refused without it).
  torch::Tensor forward(const torch::Tensor& sample, const torch::Tensor& timestep,
                        const torch::Tensor& encoder_hidden_states, const UNetAddedConditions& added);

  /// Recompute every resnet / transformer in backward while training (less memory).
  void set_gradient_checkpointing(bool enabled);
  bool gradient_checkpointing() const { return checkpointing_; }

  /// Converts the 4-D (conv) weights to channels-last (or back to contiguous) and makes forward
  /// feed channels-last activations. Outputs are returned in the sample's memory format.
  void set_channels_last(bool enabled);

  const UNet2DConditionConfig& config() const { return config_; }

 private:
  /// float32 [B, projection_class_embeddings_input_dim]: text_embeds then the time ids' embeddings.
  torch::Tensor text_time_embedding(const UNetAddedConditions& added, int64_t batch) const;

  UNet2DConditionConfig config_;
  bool checkpointing_ = false;
  bool channels_last_ = false;
  int64_t time_proj_dim_ = 0;
  torch::nn::Conv2d conv_in_{nullptr}, conv_out_{nullptr};
  TimestepEmbedding time_embedding_{nullptr};
  TimestepEmbedding add_embedding_{nullptr};  ///< addition_embed_type "text_time" only
  std::vector<UNetDownBlock> down_blocks_;
  UNetMidBlock mid_block_{nullptr};
  std::vector<UNetUpBlock> up_blocks_;
  torch::nn::GroupNorm conv_norm_out_{nullptr};
};
TORCH_MODULE(UNet2DConditionModel);

/// Sets every 4-D floating parameter of `module` to `format` (in place, same values).
void set_conv_memory_format(torch::nn::Module& module, c10::MemoryFormat format);

}  // namespace sdtrain

#pragma once
/// diffusers UNetMidBlock2DCrossAttn: resnet, then (transformer, resnet) per layer.
/// Keys: resnets.0..N, attentions.0..N-1.
#include <vector>

#include <torch/torch.h>

#include "plugins/models/stable_diffusion/modules/resnet_block_2d.h"
#include "plugins/models/stable_diffusion/modules/transformer_2d_model.h"

namespace sdtrain {

struct UNetMidBlockOptions {
  int64_t channels = 0;
  int64_t temb_channels = 0;
  int64_t groups = 32;
  double eps = 1e-5;
  double output_scale_factor = 1.0;
  int64_t num_layers = 1;            ///< (transformer, resnet) pairs after the first resnet
  /// The Transformer2DModels' settings (cross-attention only): heads, cross_attention_dim,
  /// num_layers, use_linear_projection, upcast_attention; the block sets in_channels, dim_head
  /// (channels / heads) and norm_num_groups.
  Transformer2DOptions transformer;
};

class UNetMidBlockImpl : public torch::nn::Module {
 public:
  explicit UNetMidBlockImpl(const UNetMidBlockOptions& options);
  /// x [B, C, H, W] -> [B, C, H, W].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& temb, const torch::Tensor& context);
  void set_gradient_checkpointing(bool enabled) { checkpointing_ = enabled; }

 private:
  bool checkpointing_ = false;
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Transformer2DModel> attentions_;
};
TORCH_MODULE(UNetMidBlock);

}  // namespace sdtrain

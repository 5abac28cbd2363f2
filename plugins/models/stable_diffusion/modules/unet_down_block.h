#pragma once
/// diffusers CrossAttnDownBlock2D / DownBlock2D (and, without time embedding and with
/// downsample padding 0, the VAE's DownEncoderBlock2D): resnets (+ one Transformer2DModel after
/// each when cross-attention is on) then an optional stride-2 Downsample2D.
/// Keys: resnets.N, attentions.N, downsamplers.0.conv.
#include <vector>

#include <torch/torch.h>

#include "plugins/models/stable_diffusion/modules/downsample_2d.h"
#include "plugins/models/stable_diffusion/modules/resnet_block_2d.h"
#include "plugins/models/stable_diffusion/modules/transformer_2d_model.h"

namespace sdtrain {

struct UNetDownBlockOptions {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t temb_channels = 0;       ///< 0 = no time embedding (VAE encoder)
  int64_t num_layers = 2;          ///< resnets
  int64_t groups = 32;
  double eps = 1e-5;
  bool add_downsample = true;
  int64_t downsample_padding = 1;  ///< 1 in the UNet, 0 (asymmetric pad) in the VAE encoder
  bool cross_attention = false;    ///< CrossAttnDownBlock2D
  /// The Transformer2DModels' settings (cross-attention only): heads, cross_attention_dim,
  /// num_layers, use_linear_projection, upcast_attention; the block sets in_channels, dim_head
  /// (channels / heads) and norm_num_groups.
  Transformer2DOptions transformer;
};

/// The block's output and the skip states it hands to the up path (one per resnet, plus the
/// downsampled state when it downsamples).
struct DownBlockOutput {
  torch::Tensor hidden;
  std::vector<torch::Tensor> skips;
};

class UNetDownBlockImpl : public torch::nn::Module {
 public:
  explicit UNetDownBlockImpl(const UNetDownBlockOptions& options);
  /// x [B, in, H, W]; temb [B, temb_channels] or undefined; context [B, S, cross_dim] or
  /// undefined (required when cross_attention).
  DownBlockOutput forward(const torch::Tensor& x, const torch::Tensor& temb,
                          const torch::Tensor& context);
  /// Recompute each resnet / transformer in backward during training.
  void set_gradient_checkpointing(bool enabled) { checkpointing_ = enabled; }

 private:
  UNetDownBlockOptions options_;
  bool checkpointing_ = false;
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Transformer2DModel> attentions_;
  Downsample2D downsampler_{nullptr};
};
TORCH_MODULE(UNetDownBlock);

}  // namespace sdtrain

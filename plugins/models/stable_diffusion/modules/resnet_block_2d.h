#pragma once
/// diffusers ResnetBlock2D (time_embedding_norm "default", SiLU, no up/down sampling inside):
/// out = (shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x))) + proj(silu(temb)))))) / scale.
#include <torch/torch.h>

#include "plugins/models/stable_diffusion/modules/adaptable_layers.h"

namespace sdtrain {

/// Sizes of one ResnetBlock2D.
struct ResnetBlock2DOptions {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  /// Width of the time embedding; 0 = no time_emb_proj (the VAE's blocks).
  int64_t temb_channels = 0;
  int64_t groups = 32;        ///< GroupNorm groups of norm1 and norm2
  double eps = 1e-5;          ///< GroupNorm epsilon (UNet 1e-5, VAE 1e-6)
  double output_scale_factor = 1.0;
};

/// Keys: norm1, conv1, time_emb_proj (if temb), norm2, conv2, conv_shortcut (if in != out).
class ResnetBlock2DImpl : public torch::nn::Module {
 public:
  explicit ResnetBlock2DImpl(const ResnetBlock2DOptions& options);
  /// x [B, in, H, W], temb [B, temb_channels] (undefined when temb_channels == 0) ->
  /// [B, out, H, W].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& temb = {});

 private:
  ResnetBlock2DOptions options_;
  torch::nn::GroupNorm norm1_{nullptr}, norm2_{nullptr};
  AdaptableConv2d conv1_{nullptr}, conv2_{nullptr}, conv_shortcut_{nullptr};
  AdaptableLinear time_emb_proj_{nullptr};
};
TORCH_MODULE(ResnetBlock2D);

}  // namespace sdtrain

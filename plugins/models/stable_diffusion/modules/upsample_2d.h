#pragma once
/// diffusers Upsample2D with use_conv: nearest-neighbour x2 (or to an explicit size) then a 3x3
/// conv. bfloat16 inputs are interpolated in float32 as diffusers does. Key: conv.*.
#include <vector>

#include <torch/torch.h>

#include "plugins/models/stable_diffusion/modules/adaptable_layers.h"

namespace sdtrain {

class Upsample2DImpl : public torch::nn::Module {
 public:
  Upsample2DImpl(int64_t channels, int64_t out_channels);
  /// [B, C, H, W] -> [B, out, 2H, 2W], or [B, out, size[0], size[1]] when `size` is given
  /// (the UNet passes the skip connection's size so odd latent sizes work).
  torch::Tensor forward(const torch::Tensor& x, const std::vector<int64_t>& size = {});

 private:
  AdaptableConv2d conv_{nullptr};
};
TORCH_MODULE(Upsample2D);

}  // namespace sdtrain

#pragma once
/// diffusers Downsample2D with use_conv: a 3x3 stride-2 conv. padding 1 (UNet) or padding 0
/// after an asymmetric (0,1,0,1) zero pad (VAE encoder). Key: conv.*.
#include <torch/torch.h>

#include "plugins/models/stable_diffusion/modules/adaptable_layers.h"

namespace sdtrain {

class Downsample2DImpl : public torch::nn::Module {
 public:
  /// `padding` 1 = symmetric conv padding; 0 = pad right/bottom by one, conv without padding.
  Downsample2DImpl(int64_t channels, int64_t out_channels, int64_t padding);
  /// [B, C, H, W] -> [B, out, ceil(H/2), ceil(W/2)] (H, W even in SD).
  torch::Tensor forward(const torch::Tensor& x);

 private:
  int64_t padding_;
  AdaptableConv2d conv_{nullptr};
};
TORCH_MODULE(Downsample2D);

}  // namespace sdtrain

#pragma once
/// diffusers UNetMidBlock2D as the VAE uses it: resnet, then (attention, resnet) with a
/// single-head spatial Attention (GroupNorm, biased q/k/v, residual). No time embedding.
/// Keys: resnets.0..1, attentions.0 (group_norm, to_q, to_k, to_v, to_out.0).
#include <vector>

#include <torch/torch.h>

#include "plugins/models/stable_diffusion/modules/attention.h"
#include "plugins/models/stable_diffusion/modules/resnet_block_2d.h"

namespace sdtrain {

class VaeMidBlockImpl : public torch::nn::Module {
 public:
  /// `channels` wide, GroupNorm(`groups`, eps 1e-6) everywhere.
  VaeMidBlockImpl(int64_t channels, int64_t groups);
  /// [B, C, H, W] -> [B, C, H, W].
  torch::Tensor forward(const torch::Tensor& x);

 private:
  ResnetBlock2D resnet0_{nullptr}, resnet1_{nullptr};
  Attention attention_{nullptr};
};
TORCH_MODULE(VaeMidBlock);

}  // namespace sdtrain

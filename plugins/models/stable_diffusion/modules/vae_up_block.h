#pragma once
/// diffusers UpDecoderBlock2D: resnets (no skips, no time embedding), then an optional nearest
/// x2 Upsample2D. Keys: resnets.N, upsamplers.0.conv.
#include <vector>

#include <torch/torch.h>

#include "plugins/models/stable_diffusion/modules/resnet_block_2d.h"
#include "plugins/models/stable_diffusion/modules/upsample_2d.h"

namespace sdtrain {

class VaeUpBlockImpl : public torch::nn::Module {
 public:
  VaeUpBlockImpl(int64_t in_channels, int64_t out_channels, int64_t num_layers, int64_t groups,
                 bool add_upsample);
  /// [B, in, H, W] -> [B, out, 2H, 2W] (or H, W without upsampling).
  torch::Tensor forward(const torch::Tensor& x);

 private:
  std::vector<ResnetBlock2D> resnets_;
  Upsample2D upsampler_{nullptr};
};
TORCH_MODULE(VaeUpBlock);

}  // namespace sdtrain

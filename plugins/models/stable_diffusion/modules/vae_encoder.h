#pragma once
/// diffusers VAE Encoder (double_z): conv_in -> DownEncoderBlock2Ds -> mid block -> GroupNorm,
/// SiLU -> conv_out to 2 * latent_channels (mean and log-variance, before quant_conv).
/// Keys: conv_in, down_blocks.N.{resnets,downsamplers}, mid_block, conv_norm_out, conv_out.
#include <vector>

#include <torch/torch.h>

#include "plugins/models/stable_diffusion/modules/unet_down_block.h"
#include "plugins/models/stable_diffusion/modules/vae_mid_block.h"
#include "plugins/models/stable_diffusion/sd_modules.pb.h"

namespace sdtrain {

class VaeEncoderImpl : public torch::nn::Module {
 public:
  explicit VaeEncoderImpl(const AutoencoderKLConfig& config);
  /// images [B, in_channels, H, W] -> moments [B, 2 * latent_channels, H/f, W/f],
  /// f = 2^(blocks-1).
  torch::Tensor forward(const torch::Tensor& x);
  void set_gradient_checkpointing(bool enabled) { checkpointing_ = enabled; }

 private:
  bool checkpointing_ = false;
  torch::nn::Conv2d conv_in_{nullptr}, conv_out_{nullptr};
  std::vector<UNetDownBlock> down_blocks_;
  VaeMidBlock mid_block_{nullptr};
  torch::nn::GroupNorm conv_norm_out_{nullptr};
};
TORCH_MODULE(VaeEncoder);

}  // namespace sdtrain

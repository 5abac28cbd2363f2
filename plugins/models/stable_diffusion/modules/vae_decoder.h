#pragma once
/// diffusers VAE Decoder: conv_in -> mid block -> UpDecoderBlock2Ds -> GroupNorm, SiLU ->
/// conv_out. Keys: conv_in, mid_block, up_blocks.N.{resnets,upsamplers}, conv_norm_out, conv_out.
#include <vector>

#include <torch/torch.h>

#include "plugins/models/stable_diffusion/modules/vae_mid_block.h"
#include "plugins/models/stable_diffusion/modules/vae_up_block.h"
#include "plugins/models/stable_diffusion/sd_modules.pb.h"

namespace sdtrain {

class VaeDecoderImpl : public torch::nn::Module {
 public:
  explicit VaeDecoderImpl(const AutoencoderKLConfig& config);
  /// z [B, latent_channels, h, w] (after post_quant_conv) -> images [B, out_channels, h*f, w*f].
  /// Up blocks run in their parameters' dtype (diffusers' upscale_dtype).
  torch::Tensor forward(const torch::Tensor& z);
  void set_gradient_checkpointing(bool enabled) { checkpointing_ = enabled; }

 private:
  bool checkpointing_ = false;
  torch::nn::Conv2d conv_in_{nullptr}, conv_out_{nullptr};
  VaeMidBlock mid_block_{nullptr};
  std::vector<VaeUpBlock> up_blocks_;
  torch::nn::GroupNorm conv_norm_out_{nullptr};
};
TORCH_MODULE(VaeDecoder);

}  // namespace sdtrain

#pragma once
/// diffusers AutoencoderKL (the SD v1 VAE) built from an AutoencoderKLConfig (empty = SD v1).
/// Keys: encoder.*, decoder.*, quant_conv.*, post_quant_conv.* exactly as diffusers.
#include <torch/torch.h>

#include "plugins/models/stable_diffusion/modules/diagonal_gaussian.h"
#include "plugins/models/stable_diffusion/modules/vae_decoder.h"
#include "plugins/models/stable_diffusion/modules/vae_encoder.h"
#include "plugins/models/stable_diffusion/sd_modules.pb.h"

namespace sdtrain {

class AutoencoderKLImpl : public torch::nn::Module {
 public:
  /// @throws ConfigError when the config is inconsistent.
  explicit AutoencoderKLImpl(const AutoencoderKLConfig& config = {});
  /// images [B, 3, H, W] in [-1, 1] -> posterior over unscaled latents [B, 4, H/8, W/8].
  DiagonalGaussian encode(const torch::Tensor& images);
  /// unscaled latents [B, 4, h, w] -> images [B, 3, 8h, 8w] (roughly [-1, 1]).
  torch::Tensor decode(const torch::Tensor& latents);
  /// encode -> sample (or mode) -> decode, as diffusers' AutoencoderKL.forward.
  torch::Tensor forward(const torch::Tensor& images, bool sample_posterior = false,
                        std::optional<at::Generator> generator = std::nullopt);
  /// Pixels per latent along each side: 2^(blocks - 1), diffusers' vae_scale_factor (SD v1: 8).
  int64_t downsample_factor() const {
    const int blocks = config_.block_out_channels_size() == 0 ? 4 : config_.block_out_channels_size();
    return int64_t{1} << (blocks - 1);
  }
  /// Latents are multiplied by this for the UNet (SD v1: 0.18215).
  double scaling_factor() const { return config_.scaling_factor(); }
  void set_gradient_checkpointing(bool enabled);
  const AutoencoderKLConfig& config() const { return config_; }

 private:
  AutoencoderKLConfig config_;
  VaeEncoder encoder_{nullptr};
  VaeDecoder decoder_{nullptr};
  torch::nn::Conv2d quant_conv_{nullptr}, post_quant_conv_{nullptr};
};
TORCH_MODULE(AutoencoderKL);

}  // namespace sdtrain

#include "plugins/models/stable_diffusion/modules/autoencoder_kl.h"

namespace sdtrain {

AutoencoderKLImpl::AutoencoderKLImpl(const AutoencoderKLConfig& config) : config_(config) {
  namespace nn = torch::nn;
  const int64_t latent = config.latent_channels();
  encoder_ = register_module("encoder", VaeEncoder(config));
  decoder_ = register_module("decoder", VaeDecoder(config));
  quant_conv_ = register_module("quant_conv", nn::Conv2d(nn::Conv2dOptions(2 * latent, 2 * latent, 1)));
  post_quant_conv_ = register_module("post_quant_conv", nn::Conv2d(nn::Conv2dOptions(latent, latent, 1)));
}

DiagonalGaussian AutoencoderKLImpl::encode(const torch::Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == config_.in_channels(),
              "AutoencoderKL::encode: images must be [B, ", config_.in_channels(), ", H, W], got ",
              images.sizes());
  return DiagonalGaussian(quant_conv_(encoder_(images)));
}

torch::Tensor AutoencoderKLImpl::decode(const torch::Tensor& latents) {
  TORCH_CHECK(latents.dim() == 4 && latents.size(1) == config_.latent_channels(),
              "AutoencoderKL::decode: latents must be [B, ", config_.latent_channels(), ", h, w], got ",
              latents.sizes());
  return decoder_(post_quant_conv_(latents));
}

torch::Tensor AutoencoderKLImpl::forward(const torch::Tensor& images, bool sample_posterior,
                                         std::optional<at::Generator> generator) {
  auto posterior = encode(images);
  return decode(sample_posterior ? posterior.sample(generator) : posterior.mode());
}

void AutoencoderKLImpl::set_gradient_checkpointing(bool enabled) {
  encoder_->set_gradient_checkpointing(enabled);
  decoder_->set_gradient_checkpointing(enabled);
}

}  // namespace sdtrain

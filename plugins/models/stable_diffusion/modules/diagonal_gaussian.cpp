#include "plugins/models/stable_diffusion/modules/diagonal_gaussian.h"

namespace sdtrain {

DiagonalGaussian::DiagonalGaussian(const torch::Tensor& moments) {
  TORCH_CHECK(moments.dim() == 4 && moments.size(1) % 2 == 0,
              "DiagonalGaussian: moments must be [B, 2C, h, w], got ", moments.sizes());
  auto parts = moments.chunk(2, 1);
  mean_ = parts[0];
  logvar_ = torch::clamp(parts[1], -30.0, 20.0);
  std_ = torch::exp(0.5 * logvar_);
}

torch::Tensor DiagonalGaussian::sample(std::optional<at::Generator> generator) const {
  auto noise = at::randn(mean_.sizes(), generator, mean_.options());
  return sample_with_noise(noise);
}

torch::Tensor DiagonalGaussian::sample_with_noise(const torch::Tensor& noise) const {
  TORCH_CHECK(noise.sizes() == mean_.sizes(), "DiagonalGaussian: noise shape ", noise.sizes(),
              " != mean shape ", mean_.sizes());
  return mean_ + std_ * noise.to(mean_.options());
}

}  // namespace sdtrain

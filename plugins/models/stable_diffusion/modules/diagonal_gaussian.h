#pragma once
/// diffusers DiagonalGaussianDistribution: the VAE posterior from moments [B, 2C, h, w]
/// (mean = first C channels, logvar = last C, clamped to [-30, 20]).
#include <optional>

#include <torch/torch.h>

namespace sdtrain {

class DiagonalGaussian {
 public:
  explicit DiagonalGaussian(const torch::Tensor& moments);
  const torch::Tensor& mean() const { return mean_; }
  const torch::Tensor& logvar() const { return logvar_; }  ///< clamped
  const torch::Tensor& std() const { return std_; }
  /// mean + std * noise with noise ~ N(0, 1) drawn from `generator` (default generator when
  /// absent) in the mean's dtype and device, as diffusers' randn_tensor.
  torch::Tensor sample(std::optional<at::Generator> generator = std::nullopt) const;
  /// mean + std * noise for caller-supplied noise of the mean's shape.
  torch::Tensor sample_with_noise(const torch::Tensor& noise) const;
  /// The mode (= mean).
  torch::Tensor mode() const { return mean_; }

 private:
  torch::Tensor mean_, logvar_, std_;
};

}  // namespace sdtrain

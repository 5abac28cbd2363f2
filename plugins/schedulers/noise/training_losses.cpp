#include "plugins/schedulers/noise/training_losses.h"

#include <optional>

#include "sdtrain/errors.h"

namespace sdtrain {
namespace noise {
namespace {

torch::Tensor draw(at::IntArrayRef shape, at::Generator* generator, const torch::Tensor& like) {
  std::optional<at::Generator> gen;
  torch::Device device = torch::kCPU;
  if (generator != nullptr && generator->defined()) {
    gen = *generator;
    device = generator->device();
  }
  return torch::randn(shape, gen, torch::TensorOptions().dtype(like.scalar_type()).device(device)).to(like.device());
}

/// alphas_cumprod[t] shaped to broadcast over `like`, in like's dtype and device.
torch::Tensor at_timesteps(const torch::Tensor& values, const torch::Tensor& timesteps, const torch::Tensor& like) {
  torch::Tensor out = values.to(like.device(), like.scalar_type()).index({timesteps.to(like.device(), torch::kLong)}).flatten();
  while (out.dim() < like.dim()) out = out.unsqueeze(-1);
  return out;
}

}  // namespace

torch::Tensor offset_noise(const torch::Tensor& latents, double offset, at::Generator* generator) {
  torch::Tensor noise = draw(latents.sizes(), generator, latents);
  if (offset != 0) {
    TORCH_CHECK(latents.dim() >= 2, "offset_noise: latents must be [B, C, ...], got ", latents.sizes());
    std::vector<int64_t> shape = {latents.size(0), latents.size(1)};
    shape.resize(static_cast<size_t>(latents.dim()), 1);
    noise = noise + offset * draw(shape, generator, latents);
  }
  return noise;
}

torch::Tensor compute_snr(const torch::Tensor& alphas_cumprod, const torch::Tensor& timesteps) {
  const torch::Tensor sqrt_alphas = alphas_cumprod.pow(0.5);
  const torch::Tensor sqrt_one_minus = (1.0 - alphas_cumprod).pow(0.5);
  const torch::Tensor index = timesteps.to(alphas_cumprod.device(), torch::kLong);
  torch::Tensor alpha = sqrt_alphas.index({index}).to(torch::kFloat32);
  torch::Tensor sigma = sqrt_one_minus.index({index}).to(torch::kFloat32);
  alpha = alpha.expand(timesteps.sizes());
  sigma = sigma.expand(timesteps.sizes());
  return (alpha / sigma).pow(2).to(timesteps.device());
}

torch::Tensor min_snr_loss_weights(const torch::Tensor& snr, double gamma, const std::string& prediction_type) {
  if (!(gamma > 0)) throw ConfigError("snr_gamma must be positive, got " + std::to_string(gamma));
  const torch::Tensor clipped = std::get<0>(torch::stack({snr, torch::full_like(snr, gamma)}, 1).min(1));
  if (prediction_type == "epsilon") return clipped / snr;
  if (prediction_type == "v_prediction") return clipped / (snr + 1);
  return clipped;
}

torch::Tensor training_target(const std::string& prediction_type, const torch::Tensor& alphas_cumprod,
                              const torch::Tensor& latents, const torch::Tensor& noise,
                              const torch::Tensor& timesteps) {
  if (prediction_type == "epsilon") return noise;
  if (prediction_type == "sample") return latents;
  const torch::Tensor& abar = alphas_cumprod;
  const torch::Tensor sqrt_alpha = at_timesteps(abar.pow(0.5), timesteps, latents);
  const torch::Tensor sqrt_one_minus = at_timesteps((1 - abar).pow(0.5), timesteps, latents);
  return sqrt_alpha * noise - sqrt_one_minus * latents;
}

}  // namespace noise
}  // namespace sdtrain

#include "plugins/schedulers/noise/training_schedule.h"

#include <cmath>

#include "plugins/schedulers/noise/schedule_math.h"

namespace sdtrain {
namespace noise {

TrainingSchedule::TrainingSchedule(const NoiseScheduleOptions& options, const std::string& where,
                                   TerminalAlpha terminal)
    : options_(options) {
  betas_ = make_betas(options, where);
  alphas_cumprod_ = torch::cumprod(1.0 - betas_, 0);
  if (options.rescale_betas_zero_snr() && terminal == TerminalAlpha::kFloorAt2Pow24) {
    alphas_cumprod_[-1] = std::ldexp(1.0, -24);
  }
}

const torch::Tensor& TrainingSchedule::alphas_cumprod_on(const torch::Device& device) const {
  if (device.is_cpu()) return alphas_cumprod_;
  torch::Tensor& copy = alphas_cumprod_on_device_[device.str()];
  if (!copy.defined()) copy = alphas_cumprod_.to(device);
  return copy;
}

std::pair<torch::Tensor, torch::Tensor> TrainingSchedule::coefficients(const torch::Tensor& like,
                                                                       const torch::Tensor& timesteps) const {
  const torch::Tensor abar = alphas_cumprod_on(like.device()).to(like.scalar_type());
  const torch::Tensor index = timesteps.to(like.device(), torch::kLong);
  torch::Tensor sqrt_alpha = abar.index({index}).pow(0.5).flatten();
  torch::Tensor sqrt_one_minus = (1 - abar.index({index})).pow(0.5).flatten();
  while (sqrt_alpha.dim() < like.dim()) sqrt_alpha = sqrt_alpha.unsqueeze(-1);
  while (sqrt_one_minus.dim() < like.dim()) sqrt_one_minus = sqrt_one_minus.unsqueeze(-1);
  return {sqrt_alpha, sqrt_one_minus};
}

torch::Tensor TrainingSchedule::add_noise(const torch::Tensor& original, const torch::Tensor& noise,
                                          const torch::Tensor& timesteps) const {
  const auto [sqrt_alpha, sqrt_one_minus] = coefficients(original, timesteps);
  return sqrt_alpha * original + sqrt_one_minus * noise;
}

torch::Tensor TrainingSchedule::get_velocity(const torch::Tensor& sample, const torch::Tensor& noise,
                                             const torch::Tensor& timesteps) const {
  const auto [sqrt_alpha, sqrt_one_minus] = coefficients(sample, timesteps);
  return sqrt_alpha * noise - sqrt_one_minus * sample;
}

}  // namespace noise
}  // namespace sdtrain

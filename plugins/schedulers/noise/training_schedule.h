#pragma once
/// The training noise schedule shared by the DDPM-family schedulers: betas and the cumulative
/// product of the alphas, with the forward process and the v-prediction target.
#include <map>
#include <string>

#include <torch/torch.h>

#include "plugins/schedulers/noise/schedulers.pb.h"

namespace sdtrain {
namespace noise {

/// betas and alphas_cumprod (the cumulative product of 1 - betas) as diffusers builds them
/// (float32, CPU).
class TrainingSchedule {
 public:
  /// Which value the last alpha-bar takes when options.rescale_betas_zero_snr makes it 0.
  enum class TerminalAlpha {
    kZero,           ///< the DDPM family: exactly 0, the last timestep is pure noise
    kFloorAt2Pow24,  ///< the sigma samplers: 2^-24 as diffusers sets it, so the first sigma is finite
  };

  /// Builds the schedule from `options`. Throws ConfigError naming `where` on invalid values.
  TrainingSchedule(const NoiseScheduleOptions& options, const std::string& where,
                   TerminalAlpha terminal = TerminalAlpha::kZero);

  const NoiseScheduleOptions& options() const { return options_; }
  int64_t num_train_timesteps() const { return options_.num_train_timesteps(); }
  const torch::Tensor& betas() const { return betas_; }
  const torch::Tensor& alphas_cumprod() const { return alphas_cumprod_; }
  /// alphas_cumprod() on `device`, copied there once and kept: a copy per call would make the host
  /// wait for a GPU at every training step (a blocking copy from pageable memory). Not
  /// thread-safe, as the rest of a scheduler.
  const torch::Tensor& alphas_cumprod_on(const torch::Device& device) const;

  /// sqrt(abar_t) * original + sqrt(1 - abar_t) * noise, abar cast to original's dtype and
  /// device (diffusers' DDPMScheduler.add_noise). `timesteps` integer [B] in [0, T).
  torch::Tensor add_noise(const torch::Tensor& original, const torch::Tensor& noise,
                          const torch::Tensor& timesteps) const;

  /// v = sqrt(abar_t) * noise - sqrt(1 - abar_t) * sample (diffusers' get_velocity).
  torch::Tensor get_velocity(const torch::Tensor& sample, const torch::Tensor& noise,
                             const torch::Tensor& timesteps) const;

 private:
  /// sqrt(abar_t) and sqrt(1 - abar_t) for `timesteps`, shaped to broadcast against `like`.
  std::pair<torch::Tensor, torch::Tensor> coefficients(const torch::Tensor& like, const torch::Tensor& timesteps) const;

  NoiseScheduleOptions options_;
  torch::Tensor betas_;
  torch::Tensor alphas_cumprod_;
  mutable std::map<std::string, torch::Tensor> alphas_cumprod_on_device_;  ///< by Device::str()
};

}  // namespace noise
}  // namespace sdtrain

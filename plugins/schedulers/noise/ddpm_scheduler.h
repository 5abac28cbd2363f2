#pragma once
/// "ddpm": diffusers' DDPMScheduler. The training forward process (add_noise, get_velocity) and
/// the ancestral DDPM sampler (Ho et al. 2020).
///
/// Noise: step() at t > 0 draws one tensor shaped like model_output with
/// torch::randn(shape, generator) on the generator's device (the default CPU generator when
/// null), exactly as diffusers' randn_tensor(model_output.shape, generator=generator), so the same
/// seeded CPU generator gives the same values in C++ and Python.
#include <torch/torch.h>

#include "plugins/schedulers/noise/schedulers.pb.h"
#include "plugins/schedulers/noise/training_schedule.h"
#include "sdtrain/noise_scheduler.h"

namespace sdtrain {
namespace noise {

class DdpmScheduler : public NoiseScheduler {
 public:
  /// Throws ConfigError naming the offending option.
  explicit DdpmScheduler(const DdpmSchedulerOptions& options);

  int64_t num_train_timesteps() const override { return schedule_.num_train_timesteps(); }
  torch::Tensor alphas_cumprod() const override { return schedule_.alphas_cumprod(); }
  std::string prediction_type() const override;
  torch::Tensor add_noise(const torch::Tensor& original, const torch::Tensor& noise,
                          const torch::Tensor& timesteps) const override;
  /// The v-prediction target sqrt(abar_t) * noise - sqrt(1 - abar_t) * sample.
  torch::Tensor get_velocity(const torch::Tensor& sample, const torch::Tensor& noise,
                             const torch::Tensor& timesteps) const;
  void set_timesteps(int64_t num_inference_steps) override;
  torch::Tensor timesteps() const override { return timesteps_; }
  double init_noise_sigma() const override { return 1.0; }
  torch::Tensor scale_model_input(const torch::Tensor& sample, const torch::Tensor& timestep) override;
  torch::Tensor step(const torch::Tensor& model_output, const torch::Tensor& timestep,
                     const torch::Tensor& sample, at::Generator* generator) override;

 private:
  /// The timestep after `t` in the schedule (-1 past the end); t - 1 before set_timesteps.
  int64_t previous_timestep(int64_t t) const;
  torch::Tensor alpha_prod_prev(int64_t prev_t) const;

  DdpmSchedulerOptions options_;
  TrainingSchedule schedule_;
  torch::Tensor timesteps_;  ///< int64, descending
  bool has_schedule_ = false;
};

}  // namespace noise
}  // namespace sdtrain

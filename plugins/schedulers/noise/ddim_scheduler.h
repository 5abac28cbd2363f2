#pragma once
/// "ddim": diffusers' DDIMScheduler (Song et al. 2020, "Denoising Diffusion Implicit Models").
///
/// Noise: with eta > 0, step() draws one tensor shaped like model_output with
/// torch::randn(shape, generator) on the generator's device (the default CPU generator when
/// null), as diffusers' randn_tensor(model_output.shape, generator=generator); the same seeded CPU
/// generator gives the same values in C++ and Python.
#include <torch/torch.h>

#include "plugins/schedulers/noise/schedulers.pb.h"
#include "plugins/schedulers/noise/training_schedule.h"
#include "sdtrain/noise_scheduler.h"

namespace sdtrain {
namespace noise {

class DdimScheduler : public NoiseScheduler {
 public:
  /// Throws ConfigError naming the offending option.
  explicit DdimScheduler(const DdimSchedulerOptions& options);

  int64_t num_train_timesteps() const override { return schedule_.num_train_timesteps(); }
  torch::Tensor alphas_cumprod() const override { return schedule_.alphas_cumprod(); }
  std::string prediction_type() const override;
  torch::Tensor add_noise(const torch::Tensor& original, const torch::Tensor& noise,
                          const torch::Tensor& timesteps) const override;
  void set_timesteps(int64_t num_inference_steps) override;
  torch::Tensor timesteps() const override { return timesteps_; }
  double init_noise_sigma() const override { return 1.0; }
  torch::Tensor scale_model_input(const torch::Tensor& sample, const torch::Tensor& timestep) override;
  /// Requires set_timesteps(). The previous timestep is t - T // n (diffusers' rule, whatever
  /// the spacing).
  torch::Tensor step(const torch::Tensor& model_output, const torch::Tensor& timestep,
                     const torch::Tensor& sample, at::Generator* generator) override;

 private:
  DdimSchedulerOptions options_;
  TrainingSchedule schedule_;
  torch::Tensor final_alpha_cumprod_;
  torch::Tensor timesteps_;  ///< int64, descending
  int64_t num_inference_steps_ = 0;
};

}  // namespace noise
}  // namespace sdtrain

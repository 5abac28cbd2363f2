#pragma once
/// The common part of diffusers' sigma-parameterised samplers (EulerDiscreteScheduler,
/// EulerAncestralDiscreteScheduler): latents live at scale x0 + sigma * noise, the model input is
/// scaled by 1 / sqrt(sigma^2 + 1), and a step index tracks the position in the schedule (set
/// from the first timestep seen, as diffusers' _init_step_index).
#include <vector>

#include <torch/torch.h>

#include "plugins/schedulers/noise/schedulers.pb.h"
#include "plugins/schedulers/noise/training_schedule.h"
#include "sdtrain/noise_scheduler.h"

namespace sdtrain {
namespace noise {

class SigmaScheduler : public NoiseScheduler {
 public:
  int64_t num_train_timesteps() const override { return schedule_.num_train_timesteps(); }
  torch::Tensor alphas_cumprod() const override { return schedule_.alphas_cumprod(); }
  std::string prediction_type() const override;
  /// original + sigma_t * noise; each timestep must be in timesteps() (before set_timesteps:
  /// any training timestep). Throws c10::Error for a timestep off the schedule.
  torch::Tensor add_noise(const torch::Tensor& original, const torch::Tensor& noise,
                          const torch::Tensor& timesteps) const override;
  torch::Tensor timesteps() const override { return timesteps_; }
  /// max sigma for LINSPACE / TRAILING spacing, sqrt(max sigma^2 + 1) for LEADING.
  double init_noise_sigma() const override;
  /// sample / sqrt(sigma^2 + 1) at the current step.
  torch::Tensor scale_model_input(const torch::Tensor& sample, const torch::Tensor& timestep) override;

  /// The sigmas of the current schedule, float32 [steps + 1] (last one 0).
  const torch::Tensor& sigmas() const { return sigmas_; }

 protected:
  SigmaScheduler(const NoiseScheduleOptions& options, const char* name);

  /// Sets timesteps_ (float32) and sigmas_ (float32, trailing 0) for `n` steps by interpolating
  /// the training sigmas (optionally on Karras' grid); resets the step index.
  void make_schedule(int64_t n, bool karras);
  /// The step index, initialised from `timestep` on first use.
  int64_t step_index_for(const torch::Tensor& timestep);
  /// x0 predicted from `sample` at `sigma` (0-dim float32). Throws for prediction SAMPLE when
  /// `allow_sample` is false (as diffusers' ancestral Euler).
  torch::Tensor predict_original(const torch::Tensor& model_output, const torch::Tensor& sample,
                                 const torch::Tensor& sigma, bool allow_sample) const;

  const char* name_;
  TrainingSchedule schedule_;
  torch::Tensor timesteps_;  ///< float32, descending
  torch::Tensor sigmas_;     ///< float32 [len(timesteps) + 1]
  int64_t step_index_ = -1;  ///< -1: not started
};

}  // namespace noise
}  // namespace sdtrain

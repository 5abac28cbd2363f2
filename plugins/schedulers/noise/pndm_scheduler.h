#pragma once
/// "pndm": diffusers' PNDMScheduler (Liu et al. 2022, pseudo numerical methods for diffusion
/// models). With skip_prk_steps (SD v1's setting) it is PLMS: a 4th-order linear multistep method
/// warmed up with lower orders; otherwise 3 Runge-Kutta (PRK) steps of 4 model calls come first.
/// Deterministic: draws no noise. The schedule repeats one timestep (PLMS warm-up), so step()
/// must be fed exactly timesteps() in order, once each.
#include <vector>

#include <torch/torch.h>

#include "plugins/schedulers/noise/schedulers.pb.h"
#include "plugins/schedulers/noise/training_schedule.h"
#include "sdtrain/noise_scheduler.h"

namespace sdtrain {
namespace noise {

class PndmScheduler : public NoiseScheduler {
 public:
  /// Throws ConfigError naming the offending option (prediction_type sample is not supported).
  explicit PndmScheduler(const PndmSchedulerOptions& options);

  int64_t num_train_timesteps() const override { return schedule_.num_train_timesteps(); }
  torch::Tensor alphas_cumprod() const override { return schedule_.alphas_cumprod(); }
  std::string prediction_type() const override;
  torch::Tensor add_noise(const torch::Tensor& original, const torch::Tensor& noise,
                          const torch::Tensor& timesteps) const override;
  void set_timesteps(int64_t num_inference_steps) override;
  torch::Tensor timesteps() const override { return timesteps_; }
  double init_noise_sigma() const override { return 1.0; }
  torch::Tensor scale_model_input(const torch::Tensor& sample, const torch::Tensor& timestep) override;
  torch::Tensor step(const torch::Tensor& model_output, const torch::Tensor& timestep,
                     const torch::Tensor& sample, at::Generator* generator) override;

 private:
  torch::Tensor step_prk(torch::Tensor model_output, int64_t timestep, const torch::Tensor& sample);
  torch::Tensor step_plms(torch::Tensor model_output, int64_t timestep, torch::Tensor sample);
  /// Equation (9) of the PNDM paper: x_{t-delta} from x_t and the combined epsilon.
  torch::Tensor prev_sample(const torch::Tensor& sample, int64_t timestep, int64_t prev_timestep,
                            torch::Tensor model_output) const;

  PndmSchedulerOptions options_;
  TrainingSchedule schedule_;
  torch::Tensor final_alpha_cumprod_;
  torch::Tensor timesteps_;          ///< int64: PRK steps then PLMS steps
  std::vector<int64_t> prk_timesteps_;
  int64_t num_inference_steps_ = 0;
  // Multistep state, reset by set_timesteps().
  int64_t counter_ = 0;
  std::vector<torch::Tensor> ets_;   ///< past model outputs, oldest first (at most 4)
  torch::Tensor cur_model_output_;   ///< PRK accumulator (undefined = 0)
  torch::Tensor cur_sample_;         ///< sample at the start of a PRK/PLMS warm-up step
};

}  // namespace noise
}  // namespace sdtrain

#pragma once
/// "dpmpp_2m": diffusers' DPMSolverMultistepScheduler with algorithm_type "dpmsolver++"
/// (Lu et al. 2022, DPM-Solver++; solver_order 2 is "DPM++ 2M", with use_karras_sigmas
/// "DPM++ 2M Karras"). Deterministic: draws no noise. final_sigmas_type is "zero".
///
/// One deliberate difference: before set_timesteps() diffusers' add_noise pairs timestep t with
/// the sigma of timestep T - 1 - t (its sigmas are not flipped yet); here it uses the sigma of t.
#include <vector>

#include <torch/torch.h>

#include "plugins/schedulers/noise/schedulers.pb.h"
#include "plugins/schedulers/noise/training_schedule.h"
#include "sdtrain/noise_scheduler.h"

namespace sdtrain {
namespace noise {

class DpmSolverMultistepScheduler : public NoiseScheduler {
 public:
  /// Throws ConfigError naming the offending option (solver_order outside 1..3).
  explicit DpmSolverMultistepScheduler(const DpmSolverMultistepSchedulerOptions& options);

  int64_t num_train_timesteps() const override { return schedule_.num_train_timesteps(); }
  torch::Tensor alphas_cumprod() const override { return schedule_.alphas_cumprod(); }
  std::string prediction_type() const override;
  /// alpha_t * original + sigma_t * noise at the schedule's sigma for each timestep (a timestep
  /// off the schedule takes the last one, as diffusers).
  torch::Tensor add_noise(const torch::Tensor& original, const torch::Tensor& noise,
                          const torch::Tensor& timesteps) const override;
  void set_timesteps(int64_t num_inference_steps) override;
  torch::Tensor timesteps() const override { return timesteps_; }
  double init_noise_sigma() const override { return 1.0; }
  torch::Tensor scale_model_input(const torch::Tensor& sample, const torch::Tensor& timestep) override;
  torch::Tensor step(const torch::Tensor& model_output, const torch::Tensor& timestep,
                     const torch::Tensor& sample, at::Generator* generator) override;

 private:
  /// (alpha_t, sigma_t) of the VP process for the 0-dim sigma = sigma_t / alpha_t.
  static std::pair<torch::Tensor, torch::Tensor> alpha_sigma(const torch::Tensor& sigma);
  int64_t index_of(const torch::Tensor& timestep) const;
  torch::Tensor x0_prediction(const torch::Tensor& model_output, const torch::Tensor& sample) const;
  torch::Tensor first_order(const torch::Tensor& x0, const torch::Tensor& sample) const;
  torch::Tensor second_order(const torch::Tensor& sample) const;
  torch::Tensor third_order(const torch::Tensor& sample) const;

  DpmSolverMultistepSchedulerOptions options_;
  TrainingSchedule schedule_;
  torch::Tensor timesteps_;  ///< int64 after set_timesteps (float32 before), descending
  torch::Tensor sigmas_;     ///< float32 [steps + 1], last 0
  bool has_schedule_ = false;
  // Multistep state, reset by set_timesteps().
  std::vector<torch::Tensor> model_outputs_;  ///< the last solver_order x0 predictions, oldest first
  int64_t lower_order_nums_ = 0;
  int64_t step_index_ = -1;
};

}  // namespace noise
}  // namespace sdtrain

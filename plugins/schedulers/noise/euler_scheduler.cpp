#include "plugins/schedulers/noise/euler_scheduler.h"

#include "framework/registry/registry.h"

namespace sdtrain {
namespace noise {

EulerScheduler::EulerScheduler(const EulerSchedulerOptions& options)
    : SigmaScheduler(options.schedule(), "euler"), options_(options) {}

void EulerScheduler::set_timesteps(int64_t num_inference_steps) {
  make_schedule(num_inference_steps, options_.use_karras_sigmas());
}

torch::Tensor EulerScheduler::step(const torch::Tensor& model_output, const torch::Tensor& timestep,
                                   const torch::Tensor& input_sample, at::Generator*) {
  const int64_t index = step_index_for(timestep);
  const torch::Tensor sample = input_sample.to(torch::kFloat32);
  const torch::Tensor sigma = sigmas_[index];
  const torch::Tensor sigma_hat = sigma * (0.0 + 1);  // gamma = 0: no churn
  torch::Tensor pred_original;
  if (schedule_.options().prediction_type() == NoiseScheduleOptions::EPSILON) {
    pred_original = sample - sigma_hat * model_output;
  } else {
    pred_original = predict_original(model_output, sample, sigma, true);
  }
  const torch::Tensor derivative = (sample - pred_original) / sigma_hat;
  const torch::Tensor dt = sigmas_[index + 1] - sigma_hat;
  const torch::Tensor prev_sample = (sample + derivative * dt).to(model_output.scalar_type());
  ++step_index_;
  return prev_sample;
}

namespace {
std::unique_ptr<NoiseScheduler> make_euler(const EulerSchedulerOptions& options, const PluginContext&) {
  return std::make_unique<EulerScheduler>(options);
}
}  // namespace

SDTRAIN_REGISTER_SCHEDULER("euler", EulerSchedulerOptions, "Euler sampler over Karras-style sigmas (deterministic)",
                           make_euler);

}  // namespace noise
}  // namespace sdtrain

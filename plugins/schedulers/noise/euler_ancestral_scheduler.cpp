#include "plugins/schedulers/noise/euler_ancestral_scheduler.h"

#include "framework/registry/registry.h"
#include "plugins/schedulers/noise/schedule_math.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace noise {

EulerAncestralScheduler::EulerAncestralScheduler(const EulerAncestralSchedulerOptions& options)
    : SigmaScheduler(options.schedule(), "euler_ancestral") {
  if (options.schedule().prediction_type() == NoiseScheduleOptions::SAMPLE) {
    throw ConfigError("schedule.prediction_type: euler_ancestral supports EPSILON and V_PREDICTION only");
  }
}

void EulerAncestralScheduler::set_timesteps(int64_t num_inference_steps) { make_schedule(num_inference_steps, false); }

torch::Tensor EulerAncestralScheduler::step(const torch::Tensor& model_output, const torch::Tensor& timestep,
                                            const torch::Tensor& input_sample, at::Generator* generator) {
  const int64_t index = step_index_for(timestep);
  const torch::Tensor sigma = sigmas_[index];
  const torch::Tensor sample = input_sample.to(torch::kFloat32);
  const torch::Tensor pred_original = predict_original(model_output, sample, sigma, false);
  const torch::Tensor sigma_from = sigmas_[index];
  const torch::Tensor sigma_to = sigmas_[index + 1];
  const torch::Tensor sigma_up =
      (sigma_to.pow(2) * (sigma_from.pow(2) - sigma_to.pow(2)) / sigma_from.pow(2)).pow(0.5);
  const torch::Tensor sigma_down = (sigma_to.pow(2) - sigma_up.pow(2)).pow(0.5);
  const torch::Tensor derivative = (sample - pred_original) / sigma;
  const torch::Tensor dt = sigma_down - sigma;
  torch::Tensor prev_sample = sample + derivative * dt;
  const torch::Tensor noise = randn_like_diffusers(model_output, generator, model_output.scalar_type());
  prev_sample = (prev_sample + noise * sigma_up).to(model_output.scalar_type());
  ++step_index_;
  return prev_sample;
}

namespace {
std::unique_ptr<NoiseScheduler> make_euler_ancestral(const EulerAncestralSchedulerOptions& options,
                                                     const PluginContext&) {
  return std::make_unique<EulerAncestralScheduler>(options);
}
}  // namespace

SDTRAIN_REGISTER_SCHEDULER("euler_ancestral", EulerAncestralSchedulerOptions,
                           "Euler ancestral sampler (stochastic, k-diffusion's euler_a)", make_euler_ancestral);

}  // namespace noise
}  // namespace sdtrain

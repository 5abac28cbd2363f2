#include "plugins/schedulers/noise/ddim_scheduler.h"

#include "framework/registry/registry.h"
#include "plugins/schedulers/noise/schedule_math.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace noise {

DdimScheduler::DdimScheduler(const DdimSchedulerOptions& options)
    : options_(options), schedule_(options.schedule(), "") {
  if (options.clip_sample_range() <= 0) throw ConfigError("clip_sample_range must be positive");
  if (options.eta() < 0) throw ConfigError("eta must be >= 0, got " + std::to_string(options.eta()));
  final_alpha_cumprod_ = options.set_alpha_to_one() ? torch::tensor(1.0f) : schedule_.alphas_cumprod()[0];
  timesteps_ = torch::arange(num_train_timesteps() - 1, -1, -1, torch::kLong);
}

std::string DdimScheduler::prediction_type() const {
  return prediction_type_name(options_.schedule().prediction_type());
}

torch::Tensor DdimScheduler::add_noise(const torch::Tensor& original, const torch::Tensor& noise,
                                       const torch::Tensor& timesteps) const {
  return schedule_.add_noise(original, noise, timesteps);
}

void DdimScheduler::set_timesteps(int64_t num_inference_steps) {
  timesteps_ = torch::tensor(integer_timesteps(options_.schedule(), num_inference_steps, "ddim.set_timesteps"),
                             torch::kLong);
  num_inference_steps_ = num_inference_steps;
}

torch::Tensor DdimScheduler::scale_model_input(const torch::Tensor& sample, const torch::Tensor&) { return sample; }

torch::Tensor DdimScheduler::step(const torch::Tensor& model_output, const torch::Tensor& timestep,
                                  const torch::Tensor& sample, at::Generator* generator) {
  TORCH_CHECK(num_inference_steps_ > 0, "ddim: call set_timesteps() before step()");
  const int64_t t = static_cast<int64_t>(scalar_of(timestep));
  TORCH_CHECK(t >= 0 && t < num_train_timesteps(), "ddim: timestep ", t, " out of range");
  const int64_t prev_t = t - num_train_timesteps() / num_inference_steps_;
  const torch::Tensor alpha_prod_t = schedule_.alphas_cumprod()[t];
  const torch::Tensor alpha_prod_t_prev = prev_t >= 0 ? schedule_.alphas_cumprod()[prev_t] : final_alpha_cumprod_;
  const torch::Tensor beta_prod_t = 1 - alpha_prod_t;

  torch::Tensor pred_original, pred_epsilon;
  switch (options_.schedule().prediction_type()) {
    case NoiseScheduleOptions::EPSILON:
      pred_original = (sample - beta_prod_t.pow(0.5) * model_output) / alpha_prod_t.pow(0.5);
      pred_epsilon = model_output;
      break;
    case NoiseScheduleOptions::SAMPLE:
      pred_original = model_output;
      pred_epsilon = (sample - alpha_prod_t.pow(0.5) * pred_original) / beta_prod_t.pow(0.5);
      break;
    case NoiseScheduleOptions::V_PREDICTION:
      pred_original = alpha_prod_t.pow(0.5) * sample - beta_prod_t.pow(0.5) * model_output;
      pred_epsilon = alpha_prod_t.pow(0.5) * model_output + beta_prod_t.pow(0.5) * sample;
      break;
  }
  if (options_.clip_sample()) {
    pred_original = pred_original.clamp(-options_.clip_sample_range(), options_.clip_sample_range());
  }
  // diffusers' _get_variance(t, prev_t).
  const torch::Tensor beta_prod_t_prev = 1 - alpha_prod_t_prev;
  const torch::Tensor variance = beta_prod_t_prev / beta_prod_t * (1 - alpha_prod_t / alpha_prod_t_prev);
  const double eta = options_.eta();
  const torch::Tensor std_dev_t = eta * variance.pow(0.5);
  if (options_.use_clipped_model_output()) {
    pred_epsilon = (sample - alpha_prod_t.pow(0.5) * pred_original) / beta_prod_t.pow(0.5);
  }
  const torch::Tensor direction = (1 - alpha_prod_t_prev - std_dev_t.pow(2)).pow(0.5) * pred_epsilon;
  torch::Tensor prev_sample = alpha_prod_t_prev.pow(0.5) * pred_original + direction;
  if (eta > 0) {
    const torch::Tensor noise = randn_like_diffusers(model_output, generator, model_output.scalar_type());
    prev_sample = prev_sample + std_dev_t * noise;
  }
  return prev_sample;
}

namespace {
std::unique_ptr<NoiseScheduler> make_ddim(const DdimSchedulerOptions& options, const PluginContext&) {
  return std::make_unique<DdimScheduler>(options);
}
}  // namespace

SDTRAIN_REGISTER_SCHEDULER("ddim", DdimSchedulerOptions, "DDIM sampler (eta = 0 deterministic, eta > 0 stochastic)",
                           make_ddim);

}  // namespace noise
}  // namespace sdtrain

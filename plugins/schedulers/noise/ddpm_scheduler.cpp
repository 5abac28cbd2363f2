#include "plugins/schedulers/noise/ddpm_scheduler.h"

#include "framework/registry/registry.h"
#include "plugins/schedulers/noise/schedule_math.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace noise {

DdpmScheduler::DdpmScheduler(const DdpmSchedulerOptions& options)
    : options_(options), schedule_(options.schedule(), "") {
  if (options.clip_sample_range() <= 0) throw ConfigError("clip_sample_range must be positive");
  timesteps_ = torch::arange(num_train_timesteps() - 1, -1, -1, torch::kLong);
}

std::string DdpmScheduler::prediction_type() const {
  return prediction_type_name(options_.schedule().prediction_type());
}

torch::Tensor DdpmScheduler::add_noise(const torch::Tensor& original, const torch::Tensor& noise,
                                       const torch::Tensor& timesteps) const {
  return schedule_.add_noise(original, noise, timesteps);
}

torch::Tensor DdpmScheduler::get_velocity(const torch::Tensor& sample, const torch::Tensor& noise,
                                          const torch::Tensor& timesteps) const {
  return schedule_.get_velocity(sample, noise, timesteps);
}

void DdpmScheduler::set_timesteps(int64_t num_inference_steps) {
  timesteps_ = torch::tensor(integer_timesteps(options_.schedule(), num_inference_steps, "ddpm.set_timesteps"),
                             torch::kLong);
  has_schedule_ = true;
}

torch::Tensor DdpmScheduler::scale_model_input(const torch::Tensor& sample, const torch::Tensor&) { return sample; }

int64_t DdpmScheduler::previous_timestep(int64_t t) const {
  if (!has_schedule_) return t - 1;
  const int64_t index = index_for_timestep(timesteps_, torch::tensor(t));
  TORCH_CHECK(index >= 0, "ddpm: timestep ", t, " is not in the schedule");
  // diffusers takes the first match here (nonzero()[0][0]).
  const auto* values = timesteps_.data_ptr<int64_t>();
  int64_t first = 0;
  while (values[first] != t) ++first;
  return first == timesteps_.numel() - 1 ? -1 : values[first + 1];
}

torch::Tensor DdpmScheduler::alpha_prod_prev(int64_t prev_t) const {
  return prev_t >= 0 ? schedule_.alphas_cumprod()[prev_t] : torch::tensor(1.0f);
}

torch::Tensor DdpmScheduler::step(const torch::Tensor& model_output, const torch::Tensor& timestep,
                                  const torch::Tensor& sample, at::Generator* generator) {
  const int64_t t = static_cast<int64_t>(scalar_of(timestep));
  TORCH_CHECK(t >= 0 && t < num_train_timesteps(), "ddpm: timestep ", t, " out of range");
  const int64_t prev_t = previous_timestep(t);
  const torch::Tensor alpha_prod_t = schedule_.alphas_cumprod()[t];
  const torch::Tensor alpha_prod_t_prev = alpha_prod_prev(prev_t);
  const torch::Tensor beta_prod_t = 1 - alpha_prod_t;
  const torch::Tensor beta_prod_t_prev = 1 - alpha_prod_t_prev;
  const torch::Tensor current_alpha_t = alpha_prod_t / alpha_prod_t_prev;
  const torch::Tensor current_beta_t = 1 - current_alpha_t;

  torch::Tensor pred_original;
  switch (options_.schedule().prediction_type()) {
    case NoiseScheduleOptions::EPSILON:
      pred_original = (sample - beta_prod_t.pow(0.5) * model_output) / alpha_prod_t.pow(0.5);
      break;
    case NoiseScheduleOptions::SAMPLE:
      pred_original = model_output;
      break;
    case NoiseScheduleOptions::V_PREDICTION:
      pred_original = alpha_prod_t.pow(0.5) * sample - beta_prod_t.pow(0.5) * model_output;
      break;
  }
  if (options_.clip_sample()) {
    pred_original = pred_original.clamp(-options_.clip_sample_range(), options_.clip_sample_range());
  }
  const torch::Tensor pred_original_coeff = alpha_prod_t_prev.pow(0.5) * current_beta_t / beta_prod_t;
  const torch::Tensor current_sample_coeff = current_alpha_t.pow(0.5) * beta_prod_t_prev / beta_prod_t;
  torch::Tensor prev_sample = pred_original_coeff * pred_original + current_sample_coeff * sample;
  if (t > 0) {
    const torch::Tensor noise = randn_like_diffusers(model_output, generator, model_output.scalar_type());
    // diffusers' _get_variance(t): the posterior variance, clamped away from zero.
    const torch::Tensor variance =
        ((1 - alpha_prod_t_prev) / (1 - alpha_prod_t) * current_beta_t).clamp_min(1e-20);
    torch::Tensor scaled;
    switch (options_.variance_type()) {
      case DdpmSchedulerOptions::FIXED_SMALL:
        scaled = variance.pow(0.5) * noise;
        break;
      case DdpmSchedulerOptions::FIXED_SMALL_LOG:
        scaled = torch::exp(0.5 * torch::log(variance)) * noise;
        break;
      case DdpmSchedulerOptions::FIXED_LARGE:
        scaled = current_beta_t.pow(0.5) * noise;
        break;
    }
    prev_sample = prev_sample + scaled;
  }
  return prev_sample;
}

namespace {
std::unique_ptr<NoiseScheduler> make_ddpm(const DdpmSchedulerOptions& options, const PluginContext&) {
  return std::make_unique<DdpmScheduler>(options);
}
}  // namespace

SDTRAIN_REGISTER_SCHEDULER("ddpm", DdpmSchedulerOptions,
                           "DDPM: training noise schedule (add_noise, v target) and ancestral DDPM sampler",
                           make_ddpm);

}  // namespace noise
}  // namespace sdtrain

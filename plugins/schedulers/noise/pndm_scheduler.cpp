#include "plugins/schedulers/noise/pndm_scheduler.h"

#include <algorithm>

#include "framework/registry/registry.h"
#include "plugins/schedulers/noise/schedule_math.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace noise {

PndmScheduler::PndmScheduler(const PndmSchedulerOptions& options)
    : options_(options), schedule_(options.schedule(), "") {
  if (options.schedule().rescale_betas_zero_snr()) {
    throw ConfigError("schedule.rescale_betas_zero_snr: pndm does not support it (diffusers' PNDMScheduler has no "
                      "such option); use ddim, euler or dpmpp_2m");
  }
  if (options.schedule().prediction_type() == NoiseScheduleOptions::SAMPLE) {
    throw ConfigError("schedule.prediction_type: pndm supports EPSILON and V_PREDICTION only");
  }
  final_alpha_cumprod_ = options.set_alpha_to_one() ? torch::tensor(1.0f) : schedule_.alphas_cumprod()[0];
  timesteps_ = torch::arange(num_train_timesteps() - 1, -1, -1, torch::kLong);
}

std::string PndmScheduler::prediction_type() const {
  return prediction_type_name(options_.schedule().prediction_type());
}

torch::Tensor PndmScheduler::add_noise(const torch::Tensor& original, const torch::Tensor& noise,
                                       const torch::Tensor& timesteps) const {
  return schedule_.add_noise(original, noise, timesteps);
}

void PndmScheduler::set_timesteps(int64_t num_inference_steps) {
  std::vector<int64_t> ascending = integer_timesteps(options_.schedule(), num_inference_steps, "pndm.set_timesteps");
  std::reverse(ascending.begin(), ascending.end());
  const int64_t n = static_cast<int64_t>(ascending.size());
  num_inference_steps_ = num_inference_steps;
  prk_timesteps_.clear();
  std::vector<int64_t> plms;
  if (options_.skip_prk_steps()) {
    // concatenate([ts[:-1], ts[-2:-1], ts[-1:]])[::-1]: the second-largest timestep twice.
    plms.assign(ascending.begin(), ascending.end() - 1);
    if (n >= 2) plms.push_back(ascending[static_cast<size_t>(n - 2)]);
    plms.push_back(ascending.back());
    std::reverse(plms.begin(), plms.end());
  } else {
    TORCH_CHECK(n >= 4, "pndm: PRK steps need at least 4 inference steps, got ", n);
    // prk = (ts[-4:].repeat(2) + tile([0, T // n // 2], 4))[:-1].repeat(2)[1:-1][::-1]
    const int64_t half = num_train_timesteps() / num_inference_steps / 2;
    std::vector<int64_t> base;
    for (int64_t i = n - 4; i < n; ++i) {
      base.push_back(ascending[static_cast<size_t>(i)]);
      base.push_back(ascending[static_cast<size_t>(i)] + half);
    }
    base.pop_back();
    std::vector<int64_t> doubled;
    for (int64_t v : base) {
      doubled.push_back(v);
      doubled.push_back(v);
    }
    prk_timesteps_.assign(doubled.begin() + 1, doubled.end() - 1);
    std::reverse(prk_timesteps_.begin(), prk_timesteps_.end());
    plms.assign(ascending.begin(), ascending.end() - 3);
    std::reverse(plms.begin(), plms.end());
  }
  std::vector<int64_t> all = prk_timesteps_;
  all.insert(all.end(), plms.begin(), plms.end());
  timesteps_ = torch::tensor(all, torch::kLong);
  ets_.clear();
  counter_ = 0;
  cur_model_output_ = torch::Tensor();
  cur_sample_ = torch::Tensor();
}

torch::Tensor PndmScheduler::scale_model_input(const torch::Tensor& sample, const torch::Tensor&) { return sample; }

torch::Tensor PndmScheduler::step(const torch::Tensor& model_output, const torch::Tensor& timestep,
                                  const torch::Tensor& sample, at::Generator*) {
  TORCH_CHECK(num_inference_steps_ > 0, "pndm: call set_timesteps() before step()");
  const int64_t t = static_cast<int64_t>(scalar_of(timestep));
  if (counter_ < static_cast<int64_t>(prk_timesteps_.size()) && !options_.skip_prk_steps()) {
    return step_prk(model_output, t, sample);
  }
  return step_plms(model_output, t, sample);
}

torch::Tensor PndmScheduler::step_prk(torch::Tensor model_output, int64_t timestep, const torch::Tensor& sample) {
  const int64_t diff_to_prev = counter_ % 2 ? 0 : num_train_timesteps() / num_inference_steps_ / 2;
  const int64_t prev_timestep = timestep - diff_to_prev;
  timestep = prk_timesteps_[static_cast<size_t>(counter_ / 4 * 4)];
  auto accumulate = [this](const torch::Tensor& term) {
    cur_model_output_ = cur_model_output_.defined() ? cur_model_output_ + term : term;
  };
  switch (counter_ % 4) {
    case 0:
      accumulate((1.0 / 6) * model_output);
      ets_.push_back(model_output);
      cur_sample_ = sample;
      break;
    case 1:
    case 2:
      accumulate((1.0 / 3) * model_output);
      break;
    case 3:
      model_output = cur_model_output_.defined() ? cur_model_output_ + (1.0 / 6) * model_output
                                                 : (1.0 / 6) * model_output;
      cur_model_output_ = torch::Tensor();
      break;
  }
  const torch::Tensor& start = cur_sample_.defined() ? cur_sample_ : sample;
  torch::Tensor out = prev_sample(start, timestep, prev_timestep, model_output);
  ++counter_;
  return out;
}

torch::Tensor PndmScheduler::step_plms(torch::Tensor model_output, int64_t timestep, torch::Tensor sample) {
  TORCH_CHECK(options_.skip_prk_steps() || ets_.size() >= 3,
              "pndm: PLMS steps can only follow 12 PRK steps; feed timesteps() in order");
  const int64_t delta = num_train_timesteps() / num_inference_steps_;
  int64_t prev_timestep = timestep - delta;
  if (counter_ != 1) {
    if (ets_.size() > 3) ets_.erase(ets_.begin(), ets_.end() - 3);
    ets_.push_back(model_output);
  } else {
    prev_timestep = timestep;
    timestep = timestep + delta;
  }
  const size_t n = ets_.size();
  if (n == 1 && counter_ == 0) {
    cur_sample_ = sample;
  } else if (n == 1 && counter_ == 1) {
    model_output = (model_output + ets_[n - 1]) / 2;
    sample = cur_sample_;
    cur_sample_ = torch::Tensor();
  } else if (n == 2) {
    model_output = (3 * ets_[n - 1] - ets_[n - 2]) / 2;
  } else if (n == 3) {
    model_output = (23 * ets_[n - 1] - 16 * ets_[n - 2] + 5 * ets_[n - 3]) / 12;
  } else {
    model_output = (1.0 / 24) * (55 * ets_[n - 1] - 59 * ets_[n - 2] + 37 * ets_[n - 3] - 9 * ets_[n - 4]);
  }
  torch::Tensor out = prev_sample(sample, timestep, prev_timestep, model_output);
  ++counter_;
  return out;
}

torch::Tensor PndmScheduler::prev_sample(const torch::Tensor& sample, int64_t timestep, int64_t prev_timestep,
                                         torch::Tensor model_output) const {
  TORCH_CHECK(timestep >= 0 && timestep < num_train_timesteps(), "pndm: timestep ", timestep, " out of range");
  const torch::Tensor alpha_prod_t = schedule_.alphas_cumprod()[timestep];
  const torch::Tensor alpha_prod_t_prev =
      prev_timestep >= 0 ? schedule_.alphas_cumprod()[prev_timestep] : final_alpha_cumprod_;
  const torch::Tensor beta_prod_t = 1 - alpha_prod_t;
  const torch::Tensor beta_prod_t_prev = 1 - alpha_prod_t_prev;
  if (options_.schedule().prediction_type() == NoiseScheduleOptions::V_PREDICTION) {
    model_output = alpha_prod_t.pow(0.5) * model_output + beta_prod_t.pow(0.5) * sample;
  }
  const torch::Tensor sample_coeff = (alpha_prod_t_prev / alpha_prod_t).pow(0.5);
  const torch::Tensor denom = alpha_prod_t * beta_prod_t_prev.pow(0.5) +
                              (alpha_prod_t * beta_prod_t * alpha_prod_t_prev).pow(0.5);
  return sample_coeff * sample - (alpha_prod_t_prev - alpha_prod_t) * model_output / denom;
}

namespace {
std::unique_ptr<NoiseScheduler> make_pndm(const PndmSchedulerOptions& options, const PluginContext&) {
  return std::make_unique<PndmScheduler>(options);
}
}  // namespace

SDTRAIN_REGISTER_SCHEDULER("pndm", PndmSchedulerOptions, "PNDM / PLMS sampler (SD v1's default: skip_prk_steps)",
                           make_pndm);

}  // namespace noise
}  // namespace sdtrain

#include "plugins/schedulers/noise/dpm_solver_multistep_scheduler.h"

#include <algorithm>
#include <cmath>

#include "framework/registry/registry.h"
#include "plugins/schedulers/noise/schedule_math.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace noise {

DpmSolverMultistepScheduler::DpmSolverMultistepScheduler(const DpmSolverMultistepSchedulerOptions& options)
    : options_(options), schedule_(options.schedule(), "", TrainingSchedule::TerminalAlpha::kFloorAt2Pow24) {
  if (options.solver_order() < 1 || options.solver_order() > 3) {
    throw ConfigError("solver_order must be 1, 2 or 3, got " + std::to_string(options.solver_order()));
  }
  sigmas_ = ((1 - schedule_.alphas_cumprod()) / schedule_.alphas_cumprod()).pow(0.5).flip(0);
  sigmas_ = torch::cat({sigmas_, torch::zeros({1}, torch::kFloat32)});
  timesteps_ = torch::arange(num_train_timesteps() - 1, -1, -1, torch::kFloat32);
  model_outputs_.assign(static_cast<size_t>(options.solver_order()), torch::Tensor());
}

std::string DpmSolverMultistepScheduler::prediction_type() const {
  return prediction_type_name(options_.schedule().prediction_type());
}

void DpmSolverMultistepScheduler::set_timesteps(int64_t n) {
  const NoiseScheduleOptions& s = options_.schedule();
  const int64_t t_train = num_train_timesteps();
  if (n < 1 || n > t_train) {
    throw ConfigError("dpmpp_2m.set_timesteps: num_inference_steps must be in [1, " + std::to_string(t_train) +
                      "], got " + std::to_string(n));
  }
  const int64_t last_timestep = t_train;  // lambda_min_clipped = -inf clips nothing
  std::vector<int64_t> timesteps;
  switch (s.timestep_spacing()) {
    case NoiseScheduleOptions::LINSPACE: {
      const std::vector<double> grid = numpy_linspace(0, static_cast<double>(last_timestep - 1), n + 1);
      for (int64_t i = n; i >= 1; --i) timesteps.push_back(static_cast<int64_t>(round_half_even(grid[static_cast<size_t>(i)])));
      break;
    }
    case NoiseScheduleOptions::LEADING: {
      const int64_t ratio = last_timestep / (n + 1);
      for (int64_t i = n; i >= 1; --i) timesteps.push_back(i * ratio + s.steps_offset());
      break;
    }
    case NoiseScheduleOptions::TRAILING: {
      const double ratio = static_cast<double>(t_train) / static_cast<double>(n);
      for (double v : numpy_arange(static_cast<double>(last_timestep), 0, -ratio)) {
        timesteps.push_back(static_cast<int64_t>(round_half_even(v)) - 1);
      }
      break;
    }
  }
  const std::vector<float> train_sigmas = training_sigmas(schedule_.alphas_cumprod());
  std::vector<double> sigmas;
  if (options_.use_karras_sigmas()) {
    std::vector<float> log_sigmas;
    for (float v : train_sigmas) log_sigmas.push_back(std::log(v));
    sigmas = karras_sigmas(train_sigmas.front(), train_sigmas.back(), n);
    timesteps.clear();
    for (double v : sigmas) {
      double t = sigma_to_t(v, log_sigmas);
      if (s.beta_schedule() != NoiseScheduleOptions::SQUAREDCOS_CAP_V2) t = round_half_even(t);
      timesteps.push_back(static_cast<int64_t>(t));
    }
  } else {
    for (int64_t t : timesteps) sigmas.push_back(interp_on_index_grid(static_cast<double>(t), train_sigmas));
  }
  std::vector<float> sigmas32;
  for (double v : sigmas) sigmas32.push_back(static_cast<float>(v));
  sigmas32.push_back(0.0f);
  sigmas_ = torch::tensor(sigmas32, torch::kFloat32);
  timesteps_ = torch::tensor(timesteps, torch::kLong);
  has_schedule_ = true;
  model_outputs_.assign(static_cast<size_t>(options_.solver_order()), torch::Tensor());
  lower_order_nums_ = 0;
  step_index_ = -1;
}

torch::Tensor DpmSolverMultistepScheduler::scale_model_input(const torch::Tensor& sample, const torch::Tensor&) {
  return sample;
}

std::pair<torch::Tensor, torch::Tensor> DpmSolverMultistepScheduler::alpha_sigma(const torch::Tensor& sigma) {
  // Python's `1 / x` on a tensor is x.reciprocal() * 1.
  const torch::Tensor alpha_t = (sigma.pow(2) + 1).pow(0.5).reciprocal() * 1;
  return {alpha_t, sigma * alpha_t};
}

int64_t DpmSolverMultistepScheduler::index_of(const torch::Tensor& timestep) const {
  const int64_t index = index_for_timestep(timesteps_, timestep);
  return index < 0 ? timesteps_.numel() - 1 : index;
}

torch::Tensor DpmSolverMultistepScheduler::x0_prediction(const torch::Tensor& model_output,
                                                         const torch::Tensor& sample) const {
  const auto [alpha_t, sigma_t] = alpha_sigma(sigmas_[step_index_]);
  switch (options_.schedule().prediction_type()) {
    case NoiseScheduleOptions::EPSILON:
      return (sample - sigma_t * model_output) / alpha_t;
    case NoiseScheduleOptions::SAMPLE:
      return model_output;
    case NoiseScheduleOptions::V_PREDICTION:
      return alpha_t * sample - sigma_t * model_output;
  }
  TORCH_CHECK(false, "dpmpp_2m: unknown prediction type");
}

torch::Tensor DpmSolverMultistepScheduler::first_order(const torch::Tensor& x0, const torch::Tensor& sample) const {
  const auto [alpha_t, sigma_t] = alpha_sigma(sigmas_[step_index_ + 1]);
  const auto [alpha_s, sigma_s] = alpha_sigma(sigmas_[step_index_]);
  const torch::Tensor lambda_t = torch::log(alpha_t) - torch::log(sigma_t);
  const torch::Tensor lambda_s = torch::log(alpha_s) - torch::log(sigma_s);
  const torch::Tensor h = lambda_t - lambda_s;
  return sigma_t / sigma_s * sample - alpha_t * (torch::exp(-h) - 1.0) * x0;
}

torch::Tensor DpmSolverMultistepScheduler::second_order(const torch::Tensor& sample) const {
  const auto [alpha_t, sigma_t] = alpha_sigma(sigmas_[step_index_ + 1]);
  const auto [alpha_s0, sigma_s0] = alpha_sigma(sigmas_[step_index_]);
  const auto [alpha_s1, sigma_s1] = alpha_sigma(sigmas_[step_index_ - 1]);
  const torch::Tensor lambda_t = torch::log(alpha_t) - torch::log(sigma_t);
  const torch::Tensor lambda_s0 = torch::log(alpha_s0) - torch::log(sigma_s0);
  const torch::Tensor lambda_s1 = torch::log(alpha_s1) - torch::log(sigma_s1);
  const size_t n = model_outputs_.size();
  const torch::Tensor& m0 = model_outputs_[n - 1];
  const torch::Tensor& m1 = model_outputs_[n - 2];
  const torch::Tensor h = lambda_t - lambda_s0;
  const torch::Tensor h_0 = lambda_s0 - lambda_s1;
  const torch::Tensor r0 = h_0 / h;
  const torch::Tensor& d0 = m0;
  const torch::Tensor d1 = r0.reciprocal() * 1.0 * (m0 - m1);
  if (options_.solver_type() == DpmSolverMultistepSchedulerOptions::MIDPOINT) {
    return sigma_t / sigma_s0 * sample - alpha_t * (torch::exp(-h) - 1.0) * d0 -
           0.5 * (alpha_t * (torch::exp(-h) - 1.0)) * d1;
  }
  return sigma_t / sigma_s0 * sample - alpha_t * (torch::exp(-h) - 1.0) * d0 +
         alpha_t * ((torch::exp(-h) - 1.0) / h + 1.0) * d1;
}

torch::Tensor DpmSolverMultistepScheduler::third_order(const torch::Tensor& sample) const {
  const auto [alpha_t, sigma_t] = alpha_sigma(sigmas_[step_index_ + 1]);
  const auto [alpha_s0, sigma_s0] = alpha_sigma(sigmas_[step_index_]);
  const auto [alpha_s1, sigma_s1] = alpha_sigma(sigmas_[step_index_ - 1]);
  const auto [alpha_s2, sigma_s2] = alpha_sigma(sigmas_[step_index_ - 2]);
  const torch::Tensor lambda_t = torch::log(alpha_t) - torch::log(sigma_t);
  const torch::Tensor lambda_s0 = torch::log(alpha_s0) - torch::log(sigma_s0);
  const torch::Tensor lambda_s1 = torch::log(alpha_s1) - torch::log(sigma_s1);
  const torch::Tensor lambda_s2 = torch::log(alpha_s2) - torch::log(sigma_s2);
  const size_t n = model_outputs_.size();
  const torch::Tensor& m0 = model_outputs_[n - 1];
  const torch::Tensor& m1 = model_outputs_[n - 2];
  const torch::Tensor& m2 = model_outputs_[n - 3];
  const torch::Tensor h = lambda_t - lambda_s0;
  const torch::Tensor h_0 = lambda_s0 - lambda_s1;
  const torch::Tensor h_1 = lambda_s1 - lambda_s2;
  const torch::Tensor r0 = h_0 / h;
  const torch::Tensor r1 = h_1 / h;
  const torch::Tensor& d0 = m0;
  const torch::Tensor d1_0 = r0.reciprocal() * 1.0 * (m0 - m1);
  const torch::Tensor d1_1 = r1.reciprocal() * 1.0 * (m1 - m2);
  const torch::Tensor d1 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1);
  const torch::Tensor d2 = (r0 + r1).reciprocal() * 1.0 * (d1_0 - d1_1);
  return sigma_t / sigma_s0 * sample - alpha_t * (torch::exp(-h) - 1.0) * d0 +
         alpha_t * ((torch::exp(-h) - 1.0) / h + 1.0) * d1 -
         alpha_t * ((torch::exp(-h) - 1.0 + h) / h.pow(2) - 0.5) * d2;
}

torch::Tensor DpmSolverMultistepScheduler::step(const torch::Tensor& model_output, const torch::Tensor& timestep,
                                                const torch::Tensor& input_sample, at::Generator*) {
  TORCH_CHECK(has_schedule_, "dpmpp_2m: call set_timesteps() before step()");
  if (step_index_ < 0) step_index_ = index_of(timestep);
  const int64_t steps = timesteps_.numel();
  TORCH_CHECK(step_index_ < steps, "dpmpp_2m: stepped past the end of the schedule");
  // final_sigmas_type "zero" always makes the last step first order.
  const bool lower_order_final = step_index_ == steps - 1;
  const bool lower_order_second = step_index_ == steps - 2 && options_.lower_order_final() && steps < 15;
  const torch::Tensor x0 = x0_prediction(model_output, input_sample);
  const int64_t order = options_.solver_order();
  for (int64_t i = 0; i + 1 < order; ++i) model_outputs_[static_cast<size_t>(i)] = model_outputs_[static_cast<size_t>(i + 1)];
  model_outputs_.back() = x0;
  const torch::Tensor sample = input_sample.to(torch::kFloat32);
  torch::Tensor prev_sample;
  if (order == 1 || lower_order_nums_ < 1 || lower_order_final) {
    prev_sample = first_order(x0, sample);
  } else if (order == 2 || lower_order_nums_ < 2 || lower_order_second) {
    prev_sample = second_order(sample);
  } else {
    prev_sample = third_order(sample);
  }
  if (lower_order_nums_ < order) ++lower_order_nums_;
  ++step_index_;
  return prev_sample.to(model_output.scalar_type());
}

torch::Tensor DpmSolverMultistepScheduler::add_noise(const torch::Tensor& original, const torch::Tensor& noise,
                                                     const torch::Tensor& timesteps) const {
  const torch::Tensor sigmas = sigmas_.to(original.device(), original.scalar_type());
  std::vector<int64_t> indices;
  const torch::Tensor flat = timesteps.flatten().cpu();
  for (int64_t i = 0; i < flat.numel(); ++i) indices.push_back(index_of(flat[i]));
  torch::Tensor sigma = sigmas.index({torch::tensor(indices, torch::kLong).to(original.device())}).flatten();
  while (sigma.dim() < original.dim()) sigma = sigma.unsqueeze(-1);
  const auto [alpha_t, sigma_t] = alpha_sigma(sigma);
  return alpha_t * original + sigma_t * noise;
}

namespace {
std::unique_ptr<NoiseScheduler> make_dpmpp(const DpmSolverMultistepSchedulerOptions& options, const PluginContext&) {
  return std::make_unique<DpmSolverMultistepScheduler>(options);
}
}  // namespace

SDTRAIN_REGISTER_SCHEDULER("dpmpp_2m", DpmSolverMultistepSchedulerOptions,
                           "DPM-Solver++ multistep sampler (DPM++ 2M; Karras sigmas optional)", make_dpmpp);

}  // namespace noise
}  // namespace sdtrain

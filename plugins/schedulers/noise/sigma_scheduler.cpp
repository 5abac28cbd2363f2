#include "plugins/schedulers/noise/sigma_scheduler.h"

#include <cmath>

#include "plugins/schedulers/noise/schedule_math.h"

namespace sdtrain {
namespace noise {

SigmaScheduler::SigmaScheduler(const NoiseScheduleOptions& options, const char* name)
    : name_(name), schedule_(options, "", TrainingSchedule::TerminalAlpha::kFloorAt2Pow24) {
  const torch::Tensor sigmas = ((1 - schedule_.alphas_cumprod()) / schedule_.alphas_cumprod()).pow(0.5).flip(0);
  sigmas_ = torch::cat({sigmas, torch::zeros({1}, torch::kFloat32)});
  timesteps_ = torch::arange(num_train_timesteps() - 1, -1, -1, torch::kFloat32);
}

std::string SigmaScheduler::prediction_type() const {
  return prediction_type_name(schedule_.options().prediction_type());
}

void SigmaScheduler::make_schedule(int64_t n, bool karras) {
  const std::string where = std::string(name_) + ".set_timesteps";
  std::vector<float> timesteps = float_timesteps(schedule_.options(), n, where);
  const std::vector<float> train_sigmas = training_sigmas(schedule_.alphas_cumprod());
  std::vector<double> sigmas;
  for (float t : timesteps) sigmas.push_back(interp_on_index_grid(t, train_sigmas));
  if (karras) {
    std::vector<float> log_sigmas;
    for (float s : train_sigmas) log_sigmas.push_back(std::log(s));
    sigmas = karras_sigmas(sigmas.back(), sigmas.front(), n);
    timesteps.clear();
    for (double s : sigmas) timesteps.push_back(static_cast<float>(sigma_to_t(s, log_sigmas)));
  }
  std::vector<float> sigmas32;
  for (double s : sigmas) sigmas32.push_back(static_cast<float>(s));
  sigmas32.push_back(0.0f);
  sigmas_ = torch::tensor(sigmas32, torch::kFloat32);
  timesteps_ = torch::tensor(timesteps, torch::kFloat32);
  step_index_ = -1;
}

double SigmaScheduler::init_noise_sigma() const {
  const torch::Tensor max_sigma = sigmas_.max();
  if (schedule_.options().timestep_spacing() != NoiseScheduleOptions::LEADING) return max_sigma.item<double>();
  return (max_sigma.pow(2) + 1).pow(0.5).item<double>();
}

int64_t SigmaScheduler::step_index_for(const torch::Tensor& timestep) {
  if (step_index_ < 0) {
    step_index_ = index_for_timestep(timesteps_, timestep);
    TORCH_CHECK(step_index_ >= 0, name_, ": timestep ", scalar_of(timestep), " is not in the schedule");
  }
  TORCH_CHECK(step_index_ + 1 < sigmas_.numel(), name_, ": stepped past the end of the schedule");
  return step_index_;
}

torch::Tensor SigmaScheduler::scale_model_input(const torch::Tensor& sample, const torch::Tensor& timestep) {
  const torch::Tensor sigma = sigmas_[step_index_for(timestep)];
  return sample / (sigma.pow(2) + 1).pow(0.5);
}

torch::Tensor SigmaScheduler::predict_original(const torch::Tensor& model_output, const torch::Tensor& sample,
                                               const torch::Tensor& sigma, bool allow_sample) const {
  switch (schedule_.options().prediction_type()) {
    case NoiseScheduleOptions::EPSILON:
      return sample - sigma * model_output;
    case NoiseScheduleOptions::V_PREDICTION:
      return model_output * (-sigma / (sigma.pow(2) + 1).pow(0.5)) + sample / (sigma.pow(2) + 1);
    case NoiseScheduleOptions::SAMPLE:
      TORCH_CHECK(allow_sample, name_, ": prediction_type SAMPLE is not supported");
      return model_output;
  }
  TORCH_CHECK(false, name_, ": unknown prediction type");
}

torch::Tensor SigmaScheduler::add_noise(const torch::Tensor& original, const torch::Tensor& noise,
                                        const torch::Tensor& timesteps) const {
  const torch::Tensor sigmas = sigmas_.to(original.device(), original.scalar_type());
  std::vector<int64_t> indices;
  const torch::Tensor flat = timesteps.flatten().cpu();
  for (int64_t i = 0; i < flat.numel(); ++i) {
    const int64_t index = index_for_timestep(timesteps_, flat[i]);
    TORCH_CHECK(index >= 0, name_, ": add_noise timestep ", flat[i].item<double>(), " is not in the schedule");
    indices.push_back(index);
  }
  torch::Tensor sigma = sigmas.index({torch::tensor(indices, torch::kLong).to(original.device())}).flatten();
  while (sigma.dim() < original.dim()) sigma = sigma.unsqueeze(-1);
  return original + noise * sigma;
}

}  // namespace noise
}  // namespace sdtrain

#include "framework/train/ema.h"

#include <algorithm>

namespace sdtrain {

ExponentialMovingAverage::ExponentialMovingAverage(const torch::Tensor& values, const EmaConfig& config)
    : config_(config) {
  torch::NoGradGuard no_grad;
  shadow_ = config.on_cpu() ? values.to(torch::kCPU, /*non_blocking=*/false, /*copy=*/true) : values.clone();
}

double ExponentialMovingAverage::next_decay() const {
  if (!config_.warmup()) return config_.decay();
  const auto n = static_cast<double>(num_updates_ + 1);
  return std::min(config_.decay(), (1.0 + n) / (10.0 + n));
}

void ExponentialMovingAverage::update(const torch::Tensor& values) {
  torch::NoGradGuard no_grad;
  const double decay = next_decay();
  ++num_updates_;
  const torch::Tensor source = values.device() == shadow_.device() ? values : values.to(shadow_.device());
  // shadow -= (1 - decay) * (shadow - source), LitEma's update, as one in-place lerp: no
  // full-size temporary (on the full UNet that temporary was 3.4 GB of peak memory).
  shadow_.lerp_(source, 1.0 - decay);
}

void ExponentialMovingAverage::swap_in(torch::Tensor& values) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(!backup_.defined(), "EMA weights are already swapped in");
  backup_ = values.clone();
  values.copy_(shadow_);
}

void ExponentialMovingAverage::swap_out(torch::Tensor& values) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(backup_.defined(), "EMA weights are not swapped in");
  values.copy_(backup_);
  backup_ = torch::Tensor();
}

}  // namespace sdtrain

#include "framework/train/adamw.h"

#include <cmath>

namespace sdtrain {

FlatAdamW::FlatAdamW(const torch::Tensor& values, const OptimizerConfig& config)
    : config_(config), exp_avg_(torch::zeros_like(values)), exp_avg_sq_(torch::zeros_like(values)) {}

void FlatAdamW::step(torch::Tensor& values, const torch::Tensor& grads, double lr) {
  torch::NoGradGuard no_grad;
  ++step_count_;
  const double beta1 = config_.beta1();
  const double beta2 = config_.beta2();
  values.mul_(1.0 - lr * config_.weight_decay());
  exp_avg_.lerp_(grads, 1.0 - beta1);
  exp_avg_sq_.mul_(beta2).addcmul_(grads, grads, 1.0 - beta2);
  const double bias_correction1 = 1.0 - std::pow(beta1, static_cast<double>(step_count_));
  const double bias_correction2 = 1.0 - std::pow(beta2, static_cast<double>(step_count_));
  const double step_size = lr / bias_correction1;
  torch::Tensor denom = (exp_avg_sq_.sqrt() / std::sqrt(bias_correction2)).add_(config_.eps());
  values.addcdiv_(exp_avg_, denom, -step_size);
}

}  // namespace sdtrain

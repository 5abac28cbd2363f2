#include "framework/train/loss_scaler.h"

#include <cmath>

#include "sdtrain/errors.h"

namespace sdtrain {

DynamicLossScaler::DynamicLossScaler(const LossScalingConfig& config)
    : config_(config), scale_(static_cast<float>(config.init_scale())) {}

torch::Tensor DynamicLossScaler::unscale(torch::Tensor& grads) const {
  torch::NoGradGuard no_grad;
  const auto options = grads.options().dtype(torch::kFloat32);
  const torch::Tensor inverse = torch::full({1}, static_cast<float>(1.0 / static_cast<double>(scale_)), options);
  torch::Tensor found_inf = torch::zeros({1}, options);
  at::_amp_foreach_non_finite_check_and_unscale_({grads}, found_inf, inverse);
  return found_inf;
}

void DynamicLossScaler::update(bool found_inf) {
  if (found_inf) {
    scale_ = static_cast<float>(static_cast<double>(scale_) * config_.backoff_factor());
    growth_tracker_ = 0;
    return;
  }
  const int64_t successful = growth_tracker_ + 1;
  if (successful == config_.growth_interval()) {
    const auto grown = static_cast<float>(static_cast<double>(scale_) * config_.growth_factor());
    if (std::isfinite(grown)) scale_ = grown;
    growth_tracker_ = 0;
  } else {
    growth_tracker_ = successful;
  }
}

void DynamicLossScaler::save_state(CheckpointWriter& out) {
  out.put_shared({{"scale", scale_}, {"growth_tracker", growth_tracker_}});
}

void DynamicLossScaler::load_state(const CheckpointReader& in) {
  if (!in.has_shared()) return;
  try {
    scale_ = in.shared().at("scale").get<float>();
    growth_tracker_ = in.shared().at("growth_tracker").get<int64_t>();
  } catch (const nlohmann::json::exception& error) {
    throw FormatError(in.where("trainer_state.json") + error.what());
  }
}

}  // namespace sdtrain

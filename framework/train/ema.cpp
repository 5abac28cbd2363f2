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
  TORCH_CHECK(!swapped_in_, "EMA: update while the EMA weights are swapped in");
  torch::NoGradGuard no_grad;
  const double decay = next_decay();
  ++num_updates_;
  const torch::Tensor source = values.device() == shadow_.device() ? values : values.to(shadow_.device());
  // shadow -= (1 - decay) * (shadow - source), LitEma's update, as one in-place lerp: no
  // full-size temporary (on the full UNet that temporary was 3.4 GB of peak memory).
  shadow_.lerp_(source, 1.0 - decay);
}

void ExponentialMovingAverage::exchange(torch::Tensor& values) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(values.numel() == shadow_.numel(), "EMA: the weights have ", values.numel(), " elements, the shadow ",
              shadow_.numel());
  // Chunk by chunk through one scratch chunk on the weights' device: no second full copy of the
  // weights (on the full UNet a clone was 3.4 GB), at the price of one extra pass over them.
  const int64_t chunk = std::min<int64_t>(kExchangeChunkElements, values.numel());
  torch::Tensor scratch = torch::empty({chunk}, values.options());
  for (int64_t begin = 0; begin < values.numel(); begin += chunk) {
    const int64_t size = std::min(chunk, values.numel() - begin);
    torch::Tensor weights = values.narrow(0, begin, size);
    torch::Tensor shadow = shadow_.narrow(0, begin, size);
    torch::Tensor held = scratch.narrow(0, 0, size);
    held.copy_(weights);
    weights.copy_(shadow);
    shadow.copy_(held);
  }
}

void ExponentialMovingAverage::swap_in(torch::Tensor& values) {
  TORCH_CHECK(!swapped_in_, "EMA weights are already swapped in");
  exchange(values);
  swapped_in_ = true;
}

void ExponentialMovingAverage::swap_out(torch::Tensor& values) {
  TORCH_CHECK(swapped_in_, "EMA weights are not swapped in");
  exchange(values);
  swapped_in_ = false;
}

}  // namespace sdtrain

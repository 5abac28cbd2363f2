#include "framework/train/adamw.h"

#include <algorithm>
#include <cmath>

namespace sdtrain {

std::vector<AdamWSegment> segments_within(const std::vector<AdamWSegment>& segments, int64_t begin, int64_t end) {
  std::vector<AdamWSegment> inside;
  for (const AdamWSegment& segment : segments) {
    const int64_t low = std::max(segment.begin, begin);
    const int64_t high = std::min(segment.end, end);
    if (low >= high) continue;
    AdamWSegment part = segment;
    part.begin = low - begin;
    part.end = high - begin;
    inside.push_back(part);
  }
  return inside;
}

FlatAdamW::FlatAdamW(const torch::Tensor& values, const OptimizerConfig& config, std::vector<AdamWSegment> segments)
    : config_(config),
      segments_(std::move(segments)),
      exp_avg_(torch::zeros_like(values)),
      exp_avg_sq_(torch::zeros_like(values)) {
  if (segments_.empty()) segments_.push_back({0, values.numel(), 1.0, config.weight_decay()});
  int64_t covered = 0;
  for (const AdamWSegment& segment : segments_) {
    TORCH_CHECK(segment.begin == covered && segment.end >= segment.begin,
                "FlatAdamW: segments must cover the buffer in order");
    covered = segment.end;
  }
  TORCH_CHECK(covered == values.numel(), "FlatAdamW: segments cover ", covered, " of ", values.numel(), " elements");
}

void FlatAdamW::step(torch::Tensor& values, const torch::Tensor& grads, double lr) {
  torch::NoGradGuard no_grad;
  ++step_count_;
  const double beta1 = config_.beta1();
  const double beta2 = config_.beta2();
  const double bias_correction1 = 1.0 - std::pow(beta1, static_cast<double>(step_count_));
  const double bias_correction2 = 1.0 - std::pow(beta2, static_cast<double>(step_count_));
  for (const AdamWSegment& segment : segments_) {
    const int64_t size = segment.end - segment.begin;
    if (size == 0) continue;
    torch::Tensor v = values.narrow(0, segment.begin, size);
    const torch::Tensor g = grads.narrow(0, segment.begin, size);
    torch::Tensor m = exp_avg_.narrow(0, segment.begin, size);
    torch::Tensor s = exp_avg_sq_.narrow(0, segment.begin, size);
    const double segment_lr = lr * segment.lr_factor;
    v.mul_(1.0 - segment_lr * segment.weight_decay);
    m.lerp_(g, 1.0 - beta1);
    s.mul_(beta2).addcmul_(g, g, 1.0 - beta2);
    const double step_size = segment_lr / bias_correction1;
    torch::Tensor denom = (s.sqrt() / std::sqrt(bias_correction2)).add_(config_.eps());
    v.addcdiv_(m, denom, -step_size);
  }
}

}  // namespace sdtrain

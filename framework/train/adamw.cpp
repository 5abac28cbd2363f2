#include "framework/train/adamw.h"

#include <algorithm>

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
      exp_avg_sq_(torch::zeros_like(values)),
      step_tensor_(torch::zeros({}, values.options().dtype(torch::kFloat32))) {
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
  // The fused kernel reads the step from a tensor on the values' device (CUDA: without a host
  // wait); filling it is an ordinary kernel launch.
  step_tensor_.fill_(static_cast<double>(step_count_));
  for (const AdamWSegment& segment : segments_) {
    const int64_t size = segment.end - segment.begin;
    if (size == 0) continue;
    const double segment_lr = lr * segment.lr_factor;
    // One pass over the four buffers per segment, without temporaries: ATen's fused AdamW (the
    // kernel behind torch.optim.AdamW(fused=True), on the CPU and on CUDA).
    at::_fused_adamw_({values.narrow(0, segment.begin, size)}, {grads.narrow(0, segment.begin, size)},
                      {exp_avg_.narrow(0, segment.begin, size)}, {exp_avg_sq_.narrow(0, segment.begin, size)},
                      /*max_exp_avg_sqs=*/{}, {step_tensor_}, segment_lr, config_.beta1(), config_.beta2(),
                      segment.weight_decay, config_.eps(), /*amsgrad=*/false, /*maximize=*/false);
  }
}

}  // namespace sdtrain

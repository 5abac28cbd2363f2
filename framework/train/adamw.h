#pragma once
/// AdamW over one flat parameter buffer: the arithmetic of torch.optim.AdamW (decoupled weight
/// decay, bias correction) through ATen's fused kernel (torch.optim.AdamW(fused=True)), one pass
/// over parameters, gradients and moments per segment with no full-size temporary; segments when
/// parameter groups train with their own learning-rate factor or weight decay (torch.optim's
/// param_groups; the step count and so the bias correction are shared). The fused kernel rounds
/// differently from the op-by-op formula (single-tensor torch.optim.AdamW): results agree within
/// float32 rounding, and are bitwise the same for any slicing of the buffer (ZeRO-1 shards).
#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "proto/sdtrain.pb.h"

namespace sdtrain {

/// Elements [begin, end) of the buffer, updated at lr x lr_factor with weight decay weight_decay.
struct AdamWSegment {
  int64_t begin = 0;
  int64_t end = 0;
  double lr_factor = 1.0;
  double weight_decay = 0.0;
};

/// The parts of `segments` (ranges of a whole buffer) that fall inside [begin, end), with their
/// offsets made relative to `begin` (for an optimizer over that slice).
std::vector<AdamWSegment> segments_within(const std::vector<AdamWSegment>& segments, int64_t begin, int64_t end);

class FlatAdamW {
 public:
  /// State (exp_avg, exp_avg_sq) is allocated like `values` (same numel, dtype, device).
  /// `segments` must cover `values` in order; empty means one segment of everything with
  /// config.weight_decay().
  FlatAdamW(const torch::Tensor& values, const OptimizerConfig& config, std::vector<AdamWSegment> segments = {});

  /// One update of `values` in place from `grads` at learning rate `lr`, per segment with
  /// lr_s = lr x lr_factor and its weight decay wd:
  ///   values *= 1 - lr_s * wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
  ///   values -= lr_s / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
  void step(torch::Tensor& values, const torch::Tensor& grads, double lr);

  int64_t step_count() const { return step_count_; }
  torch::Tensor& exp_avg() { return exp_avg_; }
  torch::Tensor& exp_avg_sq() { return exp_avg_sq_; }
  /// For resuming: sets the number of steps taken (bias correction depends on it).
  void set_step_count(int64_t steps) { step_count_ = steps; }

 private:
  OptimizerConfig config_;
  std::vector<AdamWSegment> segments_;
  torch::Tensor exp_avg_;
  torch::Tensor exp_avg_sq_;
  torch::Tensor step_tensor_;  // float32 scalar on the buffer's device: the fused kernel's step
  int64_t step_count_ = 0;
};

}  // namespace sdtrain

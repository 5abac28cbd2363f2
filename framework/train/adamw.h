#pragma once
/// AdamW over one flat parameter buffer: the same arithmetic as torch.optim.AdamW (decoupled
/// weight decay, bias correction), as a handful of vectorised ops over all parameters at once.
#include <cstdint>

#include <torch/torch.h>

#include "proto/sdtrain.pb.h"

namespace sdtrain {

class FlatAdamW {
 public:
  /// State (exp_avg, exp_avg_sq) is allocated like `values` (same numel, dtype, device).
  FlatAdamW(const torch::Tensor& values, const OptimizerConfig& config);

  /// One update of `values` in place from `grads` at learning rate `lr`:
  ///   values *= 1 - lr * wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
  ///   values -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
  void step(torch::Tensor& values, const torch::Tensor& grads, double lr);

  int64_t step_count() const { return step_count_; }
  torch::Tensor& exp_avg() { return exp_avg_; }
  torch::Tensor& exp_avg_sq() { return exp_avg_sq_; }
  /// For resuming: sets the number of steps taken (bias correction depends on it).
  void set_step_count(int64_t steps) { step_count_ = steps; }

 private:
  OptimizerConfig config_;
  torch::Tensor exp_avg_;
  torch::Tensor exp_avg_sq_;
  int64_t step_count_ = 0;
};

}  // namespace sdtrain

#pragma once
/// Exponential moving average of the flat trained weights, as LDM's LitEma: with warm-up the
/// decay of update n (1-based) is min(decay, (1 + n) / (10 + n)); shadow -= (1 - d) (shadow - w).
#include <cstdint>

#include <torch/torch.h>

#include "proto/sdtrain.pb.h"

namespace sdtrain {

class ExponentialMovingAverage {
 public:
  /// Starts the shadow as a copy of `values`, kept on the CPU when config.on_cpu().
  ExponentialMovingAverage(const torch::Tensor& values, const EmaConfig& config);

  /// One update towards `values`.
  void update(const torch::Tensor& values);

  /// The decay the next update will use.
  double next_decay() const;

  /// Swaps the shadow into `values` / back. Used to sample and export with the EMA weights. The
  /// two buffers are exchanged in place through a scratch chunk (kExchangeChunkElements), so no
  /// second copy of the weights exists at any time; between the two calls shadow() holds the
  /// trained weights, and update() refuses to run.
  void swap_in(torch::Tensor& values);
  void swap_out(torch::Tensor& values);
  bool swapped_in() const { return swapped_in_; }

  /// The EMA weights (the trained weights while swapped in).
  torch::Tensor& shadow() { return shadow_; }
  int64_t num_updates() const { return num_updates_; }
  void set_num_updates(int64_t updates) { num_updates_ = updates; }

 private:
  /// Exchanges the contents of `values` and shadow_, chunk by chunk.
  void exchange(torch::Tensor& values);

  static constexpr int64_t kExchangeChunkElements = int64_t{16} << 20;  // 64 MB of float32
  EmaConfig config_;
  torch::Tensor shadow_;
  bool swapped_in_ = false;
  int64_t num_updates_ = 0;
};

/// The EMA weights swapped into `values` for the scope's lifetime, and the trained weights back
/// when it ends, also by an exception (validation, sampling and export with the EMA weights).
/// A null `ema`, or `active` false, makes it a no-op.
class EmaWeightsScope {
 public:
  EmaWeightsScope(ExponentialMovingAverage* ema, torch::Tensor& values, bool active = true)
      : ema_(active ? ema : nullptr), values_(values) {
    if (ema_ != nullptr) ema_->swap_in(values_);
  }
  ~EmaWeightsScope() {
    if (ema_ != nullptr) ema_->swap_out(values_);
  }
  EmaWeightsScope(const EmaWeightsScope&) = delete;
  EmaWeightsScope& operator=(const EmaWeightsScope&) = delete;

 private:
  ExponentialMovingAverage* ema_;
  torch::Tensor& values_;
};

}  // namespace sdtrain

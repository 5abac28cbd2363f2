#pragma once
/// Dynamic loss scaling for fp16 training with torch.amp.GradScaler's arithmetic, over the flat
/// gradient buffer: the loss is multiplied by scale() before backward, unscale() divides the
/// gradients by it again (GradScaler's own kernel, multiplying by the float32 reciprocal) and
/// flags, on the device, whether any was inf/NaN, and update() moves the scale: x backoff_factor after a step with
/// an inf/NaN (the growth count restarts), x growth_factor after growth_interval finite steps in
/// a row (the count restarts; a growth that would overflow float32 is not applied). The scale is
/// a float32 value, as GradScaler's scale tensor.
#include <cstdint>

#include <torch/torch.h>

#include "framework/checkpoint/stateful.h"
#include "proto/sdtrain.pb.h"

namespace sdtrain {

/// A checkpoint part: its shared state is the scale and the growth count. A checkpoint of a run
/// without the scaler (fp32/bf16) leaves it at its initial state.
class DynamicLossScaler final : public Stateful {
 public:
  explicit DynamicLossScaler(const LossScalingConfig& config);

  /// The current scale (initially config.init_scale).
  float scale() const { return scale_; }
  /// Finite steps in a row since the last growth or backoff (GradScaler's _growth_tracker).
  int64_t growth_tracker() const { return growth_tracker_; }

  /// Multiplies `grads` in place by 1 / scale() (the float32 value of the float64 reciprocal)
  /// through _amp_foreach_non_finite_check_and_unscale_, GradScaler.unscale_'s kernel. Returns a
  /// one-element float32 tensor on the gradients' device, 1 when some gradient was inf or NaN and
  /// 0 otherwise, without making the host wait for it.
  torch::Tensor unscale(torch::Tensor& grads) const;

  /// Adjusts the scale after an optimizer step attempt; `found_inf` as unscale() reported.
  void update(bool found_inf);

  void save_state(CheckpointWriter& out) override;
  void load_state(const CheckpointReader& in) override;

 private:
  LossScalingConfig config_;
  float scale_;
  int64_t growth_tracker_ = 0;
};

}  // namespace sdtrain

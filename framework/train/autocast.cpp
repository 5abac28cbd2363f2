#include "framework/train/autocast.h"

#include <ATen/autocast_mode.h>

namespace sdtrain {

torch::ScalarType autocast_dtype(Precision precision) {
  switch (precision) {
    case BF16:
      return torch::kBFloat16;
    case FP16:
      return torch::kFloat16;
    default:
      return torch::kFloat32;
  }
}

AutocastScope::AutocastScope(Precision precision, const torch::Device& device) : device_type_(device.type()) {
  if (precision == FP32) return;
  active_ = true;
  previous_enabled_ = at::autocast::is_autocast_enabled(device_type_);
  previous_dtype_ = at::autocast::get_autocast_dtype(device_type_);
  at::autocast::set_autocast_dtype(device_type_, autocast_dtype(precision));
  at::autocast::set_autocast_enabled(device_type_, true);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  // Casts of the weights are cached for the scope's lifetime; the outermost scope drops them.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(device_type_, previous_enabled_);
  at::autocast::set_autocast_dtype(device_type_, previous_dtype_);
}

}  // namespace sdtrain

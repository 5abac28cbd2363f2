#pragma once
/// The learning-rate schedule plugin family. Registered with SDTRAIN_REGISTER_LR_SCHEDULE
/// (plugin.h); a schedule that needs the run's length reads PluginContext::max_steps.
#include <cstdint>

namespace sdtrain {

/// A learning-rate schedule: LR(step) = base LR * factor(step).
class LrSchedule {
 public:
  virtual ~LrSchedule() = default;
  /// The multiplier for the optimizer step with 0-based index `step` (steps taken so far).
  virtual double factor(int64_t step) const = 0;
};

}  // namespace sdtrain

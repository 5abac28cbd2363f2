#pragma once
/// The built-in learning-rate schedules (registered as lr_schedule plugins).
#include "plugins/schedulers/lr/lr_schedules.pb.h"
#include "sdtrain/lr_schedule.h"

namespace sdtrain {

/// LDM's LambdaLinearScheduler with one cycle: f rises linearly from f_start to f_max over
/// warm_up_steps, then moves linearly from f_max at the end of warm-up towards f_min at
/// cycle_length: f = f_min + (f_max - f_min) * (cycle_length - n) / cycle_length.
class LambdaLinearSchedule : public LrSchedule {
 public:
  explicit LambdaLinearSchedule(const LambdaLinearScheduleOptions& options) : options_(options) {}
  double factor(int64_t step) const override;

 private:
  LambdaLinearScheduleOptions options_;
};

/// diffusers' get_constant_schedule_with_warmup: factor step / warm_up_steps during warm-up,
/// then 1.
class ConstantSchedule : public LrSchedule {
 public:
  explicit ConstantSchedule(const ConstantScheduleOptions& options) : options_(options) {}
  double factor(int64_t step) const override;

 private:
  ConstantScheduleOptions options_;
};

/// diffusers' get_cosine_schedule_with_warmup / get_linear_schedule_with_warmup, with a floor
/// `min_factor`: warm-up step / warm_up_steps, then decay to min_factor at total_steps.
class DecaySchedule : public LrSchedule {
 public:
  enum class Shape { COSINE, LINEAR };
  /// `total_steps` replaces options.total_steps() when that is 0 (the run's max_steps).
  DecaySchedule(const DecayScheduleOptions& options, Shape shape, int64_t total_steps);
  double factor(int64_t step) const override;

 private:
  DecayScheduleOptions options_;
  Shape shape_;
  int64_t total_steps_;
};

}  // namespace sdtrain

#include "plugins/schedulers/lr/lr_schedules.h"

#include <algorithm>
#include <cmath>

#include "framework/registry/registry.h"
#include "sdtrain/errors.h"

namespace sdtrain {

double LambdaLinearSchedule::factor(int64_t step) const {
  const auto n = static_cast<double>(step);
  const auto warm_up = static_cast<double>(options_.warm_up_steps());
  if (n < warm_up) {
    return (options_.f_max() - options_.f_start()) / warm_up * n + options_.f_start();
  }
  const auto cycle = static_cast<double>(options_.cycle_length());
  return options_.f_min() + (options_.f_max() - options_.f_min()) * (cycle - n) / cycle;
}

double ConstantSchedule::factor(int64_t step) const {
  if (step < options_.warm_up_steps()) {
    return static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, options_.warm_up_steps()));
  }
  return 1.0;
}

DecaySchedule::DecaySchedule(const DecayScheduleOptions& options, Shape shape, int64_t total_steps)
    : options_(options), shape_(shape), total_steps_(options.total_steps() > 0 ? options.total_steps() : total_steps) {
  if (total_steps_ <= 0) {
    throw ConfigError("total_steps: must be > 0 (or set run.max_steps) for a decaying schedule");
  }
  if (options.warm_up_steps() > total_steps_) {
    throw ConfigError("warm_up_steps: " + std::to_string(options.warm_up_steps()) + " exceeds total_steps " +
                      std::to_string(total_steps_));
  }
}

double DecaySchedule::factor(int64_t step) const {
  const int64_t warm_up = options_.warm_up_steps();
  if (step < warm_up) return static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warm_up));
  const double progress = static_cast<double>(step - warm_up) /
                          static_cast<double>(std::max<int64_t>(1, total_steps_ - warm_up));
  double shape = 0;
  if (shape_ == Shape::COSINE) {
    shape = std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));
  } else {
    shape = std::max(0.0, 1.0 - progress);
  }
  return options_.min_factor() + (1.0 - options_.min_factor()) * shape;
}

namespace {
int64_t max_steps_of(const PluginContext& context) {
  return context.max_steps;
}
}  // namespace

SDTRAIN_REGISTER_LR_SCHEDULE("lambda_linear", LambdaLinearScheduleOptions,
                             "LDM LambdaLinearScheduler: linear warm-up f_start->f_max, then linear to f_min",
                             [](const LambdaLinearScheduleOptions& options, const PluginContext&) {
                               if (options.warm_up_steps() < 0) throw ConfigError("warm_up_steps: must be >= 0");
                               if (options.cycle_length() <= 0) throw ConfigError("cycle_length: must be > 0");
                               return std::make_unique<LambdaLinearSchedule>(options);
                             });

SDTRAIN_REGISTER_LR_SCHEDULE("constant", ConstantScheduleOptions,
                             "constant LR after an optional linear warm-up from 0",
                             [](const ConstantScheduleOptions& options, const PluginContext&) {
                               if (options.warm_up_steps() < 0) throw ConfigError("warm_up_steps: must be >= 0");
                               return std::make_unique<ConstantSchedule>(options);
                             });

SDTRAIN_REGISTER_LR_SCHEDULE("cosine", DecayScheduleOptions,
                             "linear warm-up, then cosine decay to min_factor at total_steps",
                             [](const DecayScheduleOptions& options, const PluginContext& context) {
                               return std::make_unique<DecaySchedule>(options, DecaySchedule::Shape::COSINE,
                                                                      max_steps_of(context));
                             });

SDTRAIN_REGISTER_LR_SCHEDULE("linear", DecayScheduleOptions,
                             "linear warm-up, then linear decay to min_factor at total_steps",
                             [](const DecayScheduleOptions& options, const PluginContext& context) {
                               return std::make_unique<DecaySchedule>(options, DecaySchedule::Shape::LINEAR,
                                                                      max_steps_of(context));
                             });

}  // namespace sdtrain

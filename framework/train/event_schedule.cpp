#include "framework/train/event_schedule.h"

namespace sdtrain {

EventSchedule::EventSchedule(const RunConfig& run)
    : max_steps_(run.max_steps()),
      max_epochs_(run.max_epochs()),
      log_every_(run.log_every_n_steps()),
      checkpoint_every_(run.checkpoint_every_n_steps()),
      validate_every_(run.val_every_n_epochs()) {}

bool EventSchedule::finished(const TrainProgress& progress) const {
  return stop_requested_ || (max_steps_ > 0 && progress.step >= max_steps_) ||
         (max_epochs_ > 0 && progress.epoch >= max_epochs_);
}

bool EventSchedule::log_due(int64_t step) const { return log_every_ > 0 && step % log_every_ == 0; }

bool EventSchedule::checkpoint_due(int64_t step) const {
  return checkpoint_every_ > 0 && step % checkpoint_every_ == 0 && step != last_checkpoint_step_;
}

bool EventSchedule::final_checkpoint_due(int64_t step) const { return step != last_checkpoint_step_ || step == 0; }

bool EventSchedule::validation_due(int64_t epochs_done) const {
  return validate_every_ > 0 && epochs_done % validate_every_ == 0 && !stopped_by_signal_;
}

}  // namespace sdtrain

#pragma once
/// When the training loop does what besides stepping: each condition written once.
///   log         every run.log_every_n_steps optimizer steps (StepMetrics::log_due)
///   checkpoint  every run.checkpoint_every_n_steps steps (never twice for one step), and at the
///               end of the run unless the last step was just checkpointed
///   validate    at the end of every run.val_every_n_epochs-th epoch, unless a stop signal ended
///               the run
///   stop        run.max_steps reached, run.max_epochs reached, or a stop requested (a callback,
///               or a SIGTERM/SIGUSR1 on any rank)
#include <cstdint>

#include "proto/sdtrain.pb.h"
#include "sdtrain/callback.h"

namespace sdtrain {

class EventSchedule {
 public:
  explicit EventSchedule(const RunConfig& run);

  /// The run is done: a stop was requested or a limit reached.
  bool finished(const TrainProgress& progress) const;
  /// Step `step` (optimizer steps done) is a logging step.
  bool log_due(int64_t step) const;
  /// A periodic checkpoint is due after step `step`.
  bool checkpoint_due(int64_t step) const;
  /// The final checkpoint is due (the run ends at step `step`).
  bool final_checkpoint_due(int64_t step) const;
  /// Validation is due after finishing epoch `epochs_done` (1-based count of finished epochs).
  bool validation_due(int64_t epochs_done) const;

  /// Step `step` was checkpointed (or resumed from: its checkpoint exists).
  void checkpointed(int64_t step) { last_checkpoint_step_ = step; }
  /// Ends the run after the current step.
  void request_stop() { stop_requested_ = true; }
  /// A stop signal ends the run after the current step (no validation follows).
  void stop_by_signal() { stop_requested_ = stopped_by_signal_ = true; }
  bool stopped_by_signal() const { return stopped_by_signal_; }

 private:
  int64_t max_steps_;
  int64_t max_epochs_;
  int64_t log_every_;
  int64_t checkpoint_every_;
  int64_t validate_every_;
  int64_t last_checkpoint_step_ = 0;
  bool stop_requested_ = false;
  bool stopped_by_signal_ = false;
};

}  // namespace sdtrain

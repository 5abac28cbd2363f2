#pragma once
/// One optimizer step of data-parallel training, as a part of its own:
///   accumulate() per micro-batch: pixels to the device, the forward pass under autocast, the
///     loss scaled (fp16) and divided by the accumulation count, backward; only the step's last
///     micro-batch arms the gradient allreduce (DDP's no_sync for the others), whose buckets then
///     overlap with that backward;
///   finish(): the allreduce completed (mean over ranks), the mean loss over micro-batches and
///     ranks, fp16 unscaling and the scaler's update, the skip of a non-finite step (the step
///     count does not advance; 100 in a row stop the run), clipping, AdamW (ZeRO-1 sharded or
///     not) at the scheduled learning rate, the EMA update, and the gradients zeroed. The host
///     waits for the device once here: the loss sum, the gradient norm and the fp16 overflow
///     flag come back in one copy (accumulate() itself never waits).
/// It owns what the step changes: the gradient reducer, the optimizer, the EMA and the loss
/// scaler, and registers the ones a resume needs as checkpoint parts.
#include <cstdint>
#include <memory>
#include <vector>

#include <torch/torch.h>

#include "framework/checkpoint/checkpoint_manager.h"
#include "framework/dist/communicator.h"
#include "framework/dist/gradient_reducer.h"
#include "framework/train/adamw.h"
#include "framework/train/ema.h"
#include "framework/train/flat_parameters.h"
#include "framework/train/loss_scaler.h"
#include "framework/train/sharded_adamw.h"
#include "proto/sdtrain.pb.h"
#include "sdtrain/callback.h"
#include "sdtrain/lr_schedule.h"
#include "sdtrain/model.h"
#include "sdtrain/noise_scheduler.h"

namespace sdtrain {

/// What finish() reports: the step's metrics and how many images it trained on (all ranks).
struct StepOutcome {
  StepMetrics metrics;
  int64_t images = 0;
};

class TrainStep {
 public:
  /// `parameters` are `model`'s trained parameters (already on `device`, the same on every rank);
  /// `config` gives the optimizer, EMA, precision, loss scaling, clipping, accumulation, batch
  /// size and bucket size; `lr_schedule` and `communicator` must outlive the step.
  TrainStep(Model& model, FlatParameters& parameters, Communicator& communicator, const TrainConfig& config,
            const LrSchedule& lr_schedule, const torch::Device& device);
  ~TrainStep();

  /// Forward and backward of one micro-batch. `ends_step`: the step's last micro-batch (its
  /// backward sends the gradients; finish() must follow).
  void accumulate(Batch& batch, bool ends_step);
  /// Micro-batches accumulated since the last finish().
  int micro_batches() const { return micro_batches_; }
  /// Completes the step after `steps_done` optimizer steps (collective). metrics.skipped when the
  /// update was not applied. Throws std::runtime_error after 100 skipped steps in a row.
  StepOutcome finish(int64_t steps_done);
  /// Restarts the step clock (the next step's time counts from here).
  void start_clock();

  /// The learning rate of optimizer step `step` (base LR, scale_lr, schedule).
  double learning_rate(int64_t step) const;

  /// Registers "optimizer", "ema" (when on) and "loss_scaler" (fp16) with `checkpoints`.
  void add_checkpoint_parts(CheckpointManager& checkpoints);

  /// The AdamW of an unsharded run, else null.
  FlatAdamW* optimizer() { return optimizer_.get(); }
  /// The ZeRO-1 optimizer (distributed.zero_stage1), else null.
  ShardedAdamW* sharded_optimizer() { return sharded_optimizer_.get(); }
  /// The EMA (ema.enabled), else null.
  ExponentialMovingAverage* ema() { return ema_.get(); }
  /// The fp16 loss scaler (precision FP16), else null.
  const DynamicLossScaler* loss_scaler() const { return loss_scaler_.get(); }

 private:
  void start_ema_from_model();
  /// Applies the update of a step whose gradients are finite: clipping, AdamW, EMA.
  void apply_update(int64_t steps_done, StepMetrics& metrics);

  static constexpr int kMaxConsecutiveSkips = 100;
  Model& model_;
  FlatParameters& parameters_;
  Communicator& communicator_;
  TrainConfig config_;
  const LrSchedule& lr_schedule_;
  torch::Device device_;
  int world_size_;
  std::unique_ptr<GradientReducer> gradient_reducer_;
  std::unique_ptr<FlatAdamW> optimizer_;
  std::unique_ptr<ShardedAdamW> sharded_optimizer_;
  std::unique_ptr<ExponentialMovingAverage> ema_;
  std::unique_ptr<DynamicLossScaler> loss_scaler_;
  std::vector<std::unique_ptr<Stateful>> checkpoint_parts_;

  torch::Tensor loss_sum_;  ///< float64 sum of the micro-batch losses on the device (undefined: none)
  int micro_batches_ = 0;
  double step_start_s_ = 0;
  int consecutive_skips_ = 0;
};

}  // namespace sdtrain

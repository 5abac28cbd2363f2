#pragma once
/// The callback plugin interface, with Lightning's hook names.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <torch/types.h>

#include "sdtrain/image_sink.h"

namespace sdtrain {

class Model;
struct Batch;

/// Where training stands. Steps count optimizer steps; epochs and batches count micro-batches
/// of this rank.
struct TrainProgress {
  int64_t step = 0;               ///< optimizer steps completed
  int64_t epoch = 0;              ///< current epoch (0-based)
  int64_t batch_in_epoch = 0;     ///< micro-batches done in this epoch
  int64_t batches_per_epoch = 0;  ///< micro-batches per epoch on each rank
  int64_t max_steps = 0;          ///< step limit of the run (0 = none)
  /// The step the run ends at: the step limit or the end of the epoch limit, whichever comes
  /// first (0 = neither is set).
  int64_t total_steps = 0;
  int64_t images_seen = 0;        ///< images trained on, over all ranks
};

/// What one optimizer step measured (all ranks averaged where it applies).
struct StepMetrics {
  double loss = 0;              ///< mean loss over the step's micro-batches and ranks
  double learning_rate = 0;     ///< applied (a skipped step: the one it would have applied)
  double grad_norm = 0;         ///< global gradient norm before clipping (fp16: unscaled; NaN if skipped)
  double step_time_s = 0;       ///< wall time of this optimizer step
  double images_per_s = 0;      ///< over all ranks
  /// fp16 overflow or the NaN guard skipped the update: no optimizer step, the step count and so
  /// the LR schedule did not advance (progress().step is unchanged).
  bool skipped = false;
  /// Most bytes of tensors this rank has held on its GPU at once so far in the run (PyTorch's
  /// caching allocator's count, torch.cuda.max_memory_allocated()); -1 when training on the CPU.
  int64_t peak_device_memory_bytes = -1;
  /// This step is a logging step (every run.log_every_n_steps): callbacks that log scalars
  /// periodically write this step's.
  bool log_due = false;
};

/// The trainer as callbacks see it.
class TrainerHandle {
 public:
  virtual ~TrainerHandle() = default;
  virtual const TrainProgress& progress() const = 0;
  virtual Model& model() = 0;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  /// run.output_dir, created.
  virtual const std::string& output_dir() const = 0;
  /// Ends training after the current step (a checkpoint is written first).
  virtual void request_stop() = 0;
  /// The latest value of each named evaluation metric, set before the hook that announces it:
  /// "val/loss" (the validation loss with the trained weights) and "val/loss_ema" (with the EMA
  /// weights, when EMA is on) before on_validation_end, when data.validation_loss is set. Empty
  /// until the first validation; values stay until replaced. The same on every rank.
  virtual const std::map<std::string, double>& metrics() const {
    static const std::map<std::string, double> none;
    return none;
  }
  /// The captions of the run's validation prompts (data.validation), in the dataset's order;
  /// empty when the run has none.
  virtual const std::vector<std::string>& validation_prompts() const = 0;
  /// The training images' side in pixels (data.transforms.resolution).
  virtual int resolution() const = 0;
  /// Runs `body` with the weights validation samples are drawn with: the EMA's when ema.enabled
  /// and ema.use_for_validation (swapped in, and back out after `body`), else the trained ones.
  /// on_validation_end already runs so; this is for samples drawn at other times (on_step_end).
  virtual void with_validation_weights(const std::function<void()>& body) { body(); }
  /// During on_step_end (of skipped steps too): the last micro-batch this rank trained in that
  /// step, as the model's training_loss received it (its pixels may be on the training device);
  /// null at other hooks. Valid until the hook returns.
  virtual const Batch* last_batch() const { return nullptr; }
  /// Sums a CPU tensor over the job's ranks, in place. A hook that calls it must do so the same
  /// number of times on every rank (see Callback).
  virtual void allreduce_sum(torch::Tensor& tensor) = 0;
  /// Where callbacks exchange images (see image_sink.h). Owned by the handle, lives as long as
  /// the trainer.
  ImageSinks& image_sinks() { return image_sinks_; }

 private:
  ImageSinks image_sinks_;
};

/// A training callback. Every hook runs on every rank; a callback that writes files should do so
/// on rank 0 only unless it writes per-rank files. Hooks must not call collectives unless all
/// ranks do.
class Callback {
 public:
  virtual ~Callback() = default;
  virtual void on_fit_start(TrainerHandle& trainer) {}
  virtual void on_train_epoch_start(TrainerHandle& trainer) {}
  /// After every optimizer step.
  virtual void on_step_end(TrainerHandle& trainer, const StepMetrics& metrics) {}
  virtual void on_train_epoch_end(TrainerHandle& trainer) {}
  /// After a validation pass; trainer.metrics() holds its values (e.g. "val/loss").
  virtual void on_validation_end(TrainerHandle& trainer) {}
  /// Returns state to store in the checkpoint (any bytes; empty = nothing).
  virtual std::string on_save_checkpoint(TrainerHandle& trainer) { return {}; }
  /// Receives what on_save_checkpoint returned when resuming.
  virtual void on_load_checkpoint(TrainerHandle& trainer, const std::string& state) {}
  virtual void on_fit_end(TrainerHandle& trainer) {}
};

}  // namespace sdtrain

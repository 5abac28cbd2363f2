#pragma once
/// The training run's parts as checkpoint parts (stateful.h): each adapter saves and restores the
/// state of one object the trainer owns. The trainer registers them with the CheckpointManager;
/// the manager knows none of them.
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "framework/checkpoint/stateful.h"
#include "framework/train/ema.h"
#include "framework/train/flat_parameters.h"

namespace sdtrain {

class Callback;
class DataLoader;
class TrainerHandle;
struct TrainProgress;

/// File names of the trained and EMA weights in a checkpoint (read by checkpoint_snapshot too).
inline constexpr const char* kCheckpointWeightsFile = "model.safetensors";
inline constexpr const char* kCheckpointEmaFile = "ema.safetensors";

/// A flat tensor laid out like `layout` (the trained weights), saved by rank 0 as one safetensors
/// file by parameter name and read back by every rank. Load: FormatError naming the file and
/// tensor when a tensor is missing or has another shape (a checkpoint of another model).
class FlatTensorState final : public Stateful {
 public:
  FlatTensorState(const FlatParameters& layout, torch::Tensor& flat, std::string file_name)
      : layout_(layout), flat_(flat), file_name_(std::move(file_name)) {}
  void save_state(CheckpointWriter& out) override;
  void load_state(const CheckpointReader& in) override;

 private:
  const FlatParameters& layout_;
  torch::Tensor& flat_;
  std::string file_name_;
};

/// The EMA: its shadow weights (kCheckpointEmaFile) and update count (shared state).
class EmaState final : public Stateful {
 public:
  EmaState(const FlatParameters& layout, ExponentialMovingAverage& ema)
      : ema_(ema), shadow_(layout, ema.shadow(), kCheckpointEmaFile) {}
  void save_state(CheckpointWriter& out) override;
  void load_state(const CheckpointReader& in) override;

 private:
  ExponentialMovingAverage& ema_;
  FlatTensorState shadow_;
};

/// Optimizer steps, images seen and the loss of every step (shared state).
class ProgressState final : public Stateful {
 public:
  ProgressState(TrainProgress& progress, std::vector<double>& loss_history)
      : progress_(progress), loss_history_(loss_history) {}
  void save_state(CheckpointWriter& out) override;
  void load_state(const CheckpointReader& in) override;

 private:
  TrainProgress& progress_;
  std::vector<double>& loss_history_;
};

/// Where the data stands, saved by every rank: the epoch, the micro-batches of it consumed, the
/// micro-batch size, and the keys of the distinct bad samples the rank skipped. No RNG state:
/// every random draw of training comes from per-sample seeds derived from (run.seed, epoch,
/// dataset index), so there is none to save.
struct SavedDataPosition {
  int64_t epoch = 0;
  int64_t batch_in_epoch = 0;  ///< per rank
  int batch_size = 0;          ///< per rank
  int world_size = 1;          ///< of the run that wrote it
};

/// Where each of `world_size` ranks with micro-batches of `batch_size` resumes in `saved.epoch`:
/// the micro-batches it skips so that together they continue at the checkpoint's sample (the
/// sampler deals the epoch's permutation out in global batches of world_size x batch_size).
/// Throws ConfigError when that sample falls inside a global batch of the new layout, and, with
/// `bucketed` (data.buckets, whose epoch plan depends on the global batch), when a checkpoint
/// taken inside an epoch is resumed with another global batch.
int64_t resumed_batch_in_epoch(const SavedDataPosition& saved, int world_size, int batch_size, bool bucketed = false);

/// The data position (rank state) into `progress` (epoch, batch_in_epoch) and the loader's bad
/// samples: on load, every writing rank must stand at the same place (FormatError naming the rank
/// file otherwise); the bad samples are this rank's own at an unchanged world size, else the union
/// of every rank's (a rank's limit then counts what any rank had met: never fewer).
class DataPositionState final : public Stateful {
 public:
  /// `bucket_digest`: bucket_plan_digest() of the run's bucket plan, "" without data.buckets. A
  /// checkpoint inside an epoch whose digest differs (the images or the bucket rules changed) is
  /// resumed with a warning: the rest of the epoch is dealt from the new plan.
  DataPositionState(TrainProgress& progress, DataLoader& loader, int batch_size, std::string bucket_digest = "")
      : progress_(progress), loader_(loader), batch_size_(batch_size), bucket_digest_(std::move(bucket_digest)) {}
  void save_state(CheckpointWriter& out) override;
  void load_state(const CheckpointReader& in) override;

 private:
  TrainProgress& progress_;
  DataLoader& loader_;
  int batch_size_;
  std::string bucket_digest_;
};

/// A callback's own state (Callback::on_save_checkpoint / on_load_checkpoint, any bytes that are
/// valid UTF-8), shared. A checkpoint without it leaves the callback as it starts.
class CallbackState final : public Stateful {
 public:
  CallbackState(Callback& callback, TrainerHandle& trainer) : callback_(callback), trainer_(trainer) {}
  void save_state(CheckpointWriter& out) override;
  void load_state(const CheckpointReader& in) override;

 private:
  Callback& callback_;
  TrainerHandle& trainer_;
};

/// The run's effective config (text format) and the absolute folder its relative paths resolve
/// against, for tools that use a checkpoint outside the run (sdsample). Nothing to restore.
class RunRecordState final : public Stateful {
 public:
  RunRecordState(std::string config_text, std::string config_dir)
      : config_text_(std::move(config_text)), config_dir_(std::move(config_dir)) {}
  void save_state(CheckpointWriter& out) override;
  void load_state(const CheckpointReader&) override {}

 private:
  std::string config_text_;
  std::string config_dir_;
};

/// Facts about the model that a checkpoint must share with the run resuming it
/// (Model::checkpoint_identity(), e.g. the base model adapters were trained on), shared. Load:
/// ConfigError naming the fact and both values when one differs or is missing from the
/// checkpoint; nothing is checked when the model states none.
class ModelIdentityState final : public Stateful {
 public:
  explicit ModelIdentityState(std::map<std::string, std::string> identity) : identity_(std::move(identity)) {}
  void save_state(CheckpointWriter& out) override;
  void load_state(const CheckpointReader& in) override;

 private:
  std::map<std::string, std::string> identity_;
};

/// The part name under which RunRecordState is registered (read by checkpoint_snapshot).
inline constexpr const char* kRunRecordPart = "run";

}  // namespace sdtrain

#pragma once
/// The training loop over named parts. fit() reads like the recipe: next micro-batch →
/// forward/backward (TrainStep) → at the step's end the optimizer step → maybe validate → maybe
/// checkpoint → maybe stop (EventSchedule). The parts own their state; every part that must
/// survive a resume is registered with the CheckpointManager (checkpoint_parts.h), which knows
/// none of them by name.
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "framework/checkpoint/checkpoint_manager.h"
#include "framework/config/config_loader.h"
#include "framework/data/data_loader.h"
#include "framework/dist/communicator.h"
#include "framework/dist/stop_flag_exchange.h"
#include "framework/registry/registry.h"
#include "framework/train/event_schedule.h"
#include "framework/train/flat_parameters.h"
#include "framework/train/train_step.h"
#include "framework/train/validation_loss.h"
#include "sdtrain/callback.h"
#include "sdtrain/dataset.h"
#include "sdtrain/lr_schedule.h"
#include "sdtrain/model.h"
#include "sdtrain/noise_scheduler.h"

namespace sdtrain {

class Trainer : public TrainerHandle {
 public:
  /// Builds the model, datasets, LR schedule and callbacks from `loaded` (throws ConfigError for
  /// plugin option errors), moves the model to `device` and makes all ranks start from rank 0's
  /// weights.
  Trainer(const LoadedConfig& loaded, const RankInfo& rank_info, Communicator& communicator,
          const torch::Device& device);
  /// The same on the device run.device picks for this rank (device_choice.h).
  Trainer(const LoadedConfig& loaded, const RankInfo& rank_info, Communicator& communicator);
  ~Trainer() override;

  /// The run's config.
  const TrainConfig& config() const { return config_; }

  /// Trains until run.max_steps / run.max_epochs (or a stop request), then writes the final
  /// checkpoint and, when final_export.folder is set, exports the final model (rank 0). Resumes
  /// first when run.resume asks for it.
  void fit();

  /// Registers one more part whose state checkpoints save and resumes restore (stateful.h), under
  /// a name of its own. Call before fit(); `part` must outlive the trainer.
  void add_checkpoint_part(const std::string& name, Stateful& part) { checkpoints_->add_part(name, part); }

  // TrainerHandle
  const TrainProgress& progress() const override { return progress_; }
  Model& model() override { return *model_; }
  int rank() const override { return rank_info_.rank; }
  int world_size() const override { return rank_info_.world_size; }
  const std::string& output_dir() const override { return output_dir_; }
  void request_stop() override { schedule_->request_stop(); }
  const std::vector<std::string>& validation_prompts() const override { return validation_prompts_; }
  int resolution() const override { return config_.data().transforms().resolution(); }
  void allreduce_sum(torch::Tensor& tensor) override { communicator_.allreduce_sum(tensor); }
  void with_validation_weights(const std::function<void()>& body) override;
  const std::map<std::string, double>& metrics() const override { return metrics_; }
  const Batch* last_batch() const override { return step_last_batch_ ? &*step_last_batch_ : nullptr; }

  /// Whether fit() ended early because a rank received SIGTERM/SIGUSR1 (its checkpoint is written).
  bool stopped_by_signal() const { return schedule_->stopped_by_signal(); }
  /// The learning rate of optimizer step `step` (base LR, scale_lr, schedule).
  double learning_rate(int64_t step) const { return step_->learning_rate(step); }
  FlatParameters& parameters() { return *flat_; }
  /// The AdamW of an unsharded run (distributed.zero_stage1 false); throws in a ZeRO-1 run.
  FlatAdamW& optimizer();
  /// The ZeRO-1 optimizer (distributed.zero_stage1), null otherwise.
  ShardedAdamW* sharded_optimizer() { return step_->sharded_optimizer(); }
  ExponentialMovingAverage* ema() { return step_->ema(); }
  /// The losses of every optimizer step so far on this run (for tests and the CSV log).
  const std::vector<double>& loss_history() const { return loss_history_; }
  /// The fp16 loss scaler (precision FP16), else null.
  const DynamicLossScaler* loss_scaler() const { return step_->loss_scaler(); }
  /// The validation-loss evaluator (data.validation_loss), else null.
  const ValidationLoss* validation_loss() const { return validation_loss_.get(); }
  /// Computes the validation losses now ("val/loss" and, with EMA, "val/loss_ema"), stores them
  /// in metrics() and returns them. Collective; empty without data.validation_loss.
  std::map<std::string, double> evaluate_validation_loss();
  /// The folder final_export writes (absolute), "" when export is off.
  const std::string& export_folder() const { return export_folder_; }

 private:
  void build_plugins();
  void build_data_loader();
  /// data.buckets: reads the image sizes (split over the ranks), logs the bucket report, writes
  /// its CSV (rank 0) and puts the bucket rules and plan into `data`.
  void plan_buckets_into(DataLoaderOptions& data);
  void check_export_folder();
  void register_checkpoint_parts();
  void resume_if_asked();
  /// Trains the rest of the current epoch; false when the run stopped before its end.
  bool train_epoch();
  void end_step();
  void end_epoch();
  void run_validation();
  void save_checkpoint();
  void export_final_model();
  template <class Hook>
  void for_each_callback(Hook hook);

  TrainConfig config_;
  std::string base_dir_;
  RankInfo rank_info_;
  Communicator& communicator_;
  StopFlagExchange stop_flags_;
  std::string output_dir_;
  torch::Device device_;

  std::unique_ptr<Model> model_;
  std::shared_ptr<const Dataset> train_set_;
  std::shared_ptr<const Dataset> class_set_;  ///< data.prior_preservation's class images, or null
  std::vector<std::string> validation_prompts_;
  std::unique_ptr<DataLoader> loader_;
  std::string bucket_digest_;  ///< bucket_plan_digest() with data.buckets, else ""
  std::unique_ptr<LrSchedule> lr_schedule_;
  std::vector<std::unique_ptr<Callback>> callbacks_;
  std::unique_ptr<FlatParameters> flat_;
  std::unique_ptr<TrainStep> step_;
  std::unique_ptr<ValidationLoss> validation_loss_;
  std::unique_ptr<EventSchedule> schedule_;
  std::unique_ptr<CheckpointManager> checkpoints_;
  std::vector<std::unique_ptr<Stateful>> checkpoint_parts_;
  std::map<std::string, double> metrics_;
  std::string export_folder_;

  TrainProgress progress_;
  /// The step's last micro-batch while on_step_end runs (last_batch()), then released.
  std::optional<Batch> step_last_batch_;
  std::vector<double> loss_history_;
};

}  // namespace sdtrain

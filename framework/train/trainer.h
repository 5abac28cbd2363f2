#pragma once
/// The training loop: micro-batches → loss → backward → gradient accumulation and allreduce →
/// clipping → AdamW → LR schedule → EMA, with callbacks, validation and checkpoints.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "framework/config/config_loader.h"
#include "framework/data/data_loader.h"
#include "framework/dist/communicator.h"
#include "framework/dist/gradient_reducer.h"
#include "framework/plugin/callback.h"
#include "framework/plugin/dataset.h"
#include "framework/plugin/model.h"
#include "framework/plugin/scheduler.h"
#include "framework/registry/registry.h"
#include "framework/train/adamw.h"
#include "framework/train/ema.h"
#include "framework/train/flat_parameters.h"
#include "framework/train/sharded_adamw.h"
#include "framework/train/loss_scaler.h"
#include "framework/train/validation_loss.h"

namespace sdtrain {

class Trainer : public TrainerHandle {
 public:
  /// Builds the model, datasets, LR schedule and callbacks from `loaded` (throws ConfigError for
  /// plugin option errors), moves the model to this rank's device and makes all ranks start from
  /// rank 0's weights.
  Trainer(const LoadedConfig& loaded, const RankInfo& rank_info, Communicator& communicator);
  ~Trainer() override;

  /// Trains until run.max_steps / run.max_epochs (or a stop request), then writes the final
  /// checkpoint and, when final_export.folder is set, exports the final model (rank 0). Resumes
  /// first when run.resume asks for it.
  void fit();

  // TrainerHandle
  const TrainConfig& config() const override { return config_; }
  const TrainProgress& progress() const override { return progress_; }
  Model& model() override { return *model_; }
  int rank() const override { return rank_info_.rank; }
  int world_size() const override { return rank_info_.world_size; }
  const std::string& output_dir() const override { return output_dir_; }
  void request_stop() override { stop_requested_ = true; }
  /// Whether fit() ended early because a rank received SIGTERM/SIGUSR1 (its checkpoint is written).
  bool stopped_by_signal() const { return stopped_by_signal_; }
  Communicator& communicator() override { return communicator_; }
  const std::map<std::string, double>& metrics() const override { return metrics_; }

  /// The learning rate of optimizer step `step` (base LR, scale_lr, schedule).
  double learning_rate(int64_t step) const;
  FlatParameters& parameters() { return *flat_; }
  /// The AdamW of an unsharded run (distributed.zero_stage1 false); throws in a ZeRO-1 run.
  FlatAdamW& optimizer() {
    TORCH_CHECK(optimizer_, "Trainer::optimizer(): a distributed.zero_stage1 run has sharded_optimizer() instead");
    return *optimizer_;
  }
  /// The ZeRO-1 optimizer (distributed.zero_stage1), null otherwise.
  ShardedAdamW* sharded_optimizer() { return sharded_optimizer_.get(); }
  ExponentialMovingAverage* ema() { return ema_.get(); }
  /// The losses of every optimizer step so far on this run (for tests and the CSV log).
  const std::vector<double>& loss_history() const { return loss_history_; }
  /// The fp16 loss scaler (precision FP16), else null.
  const DynamicLossScaler* loss_scaler() const { return loss_scaler_.get(); }
  /// The validation-loss evaluator (data.validation_loss), else null.
  const ValidationLoss* validation_loss() const { return validation_loss_.get(); }
  /// Computes the validation losses now ("val/loss" and, with EMA, "val/loss_ema"), stores them
  /// in metrics() and returns them. Collective; empty without data.validation_loss.
  std::map<std::string, double> evaluate_validation_loss();
  /// The folder final_export writes (absolute), "" when export is off.
  const std::string& export_folder() const { return export_folder_; }

 private:
  void optimizer_step(double loss_sum, int micro_batches, double step_start_s);
  void run_validation();
  void start_ema_from_model();
  void setup_validation_loss(const PluginContext& context);
  void export_final_model();
  template <class Hook>
  void for_each_callback(Hook hook);

  TrainConfig config_;
  std::string base_dir_;
  RankInfo rank_info_;
  Communicator& communicator_;
  std::string output_dir_;
  torch::Device device_;

  std::unique_ptr<Model> model_;
  std::shared_ptr<const Dataset> train_set_;
  std::shared_ptr<const Dataset> validation_set_;
  std::unique_ptr<DataLoader> loader_;
  std::unique_ptr<LrSchedule> lr_schedule_;
  std::vector<std::unique_ptr<Callback>> callbacks_;
  std::unique_ptr<FlatParameters> flat_;
  std::unique_ptr<GradientReducer> gradient_reducer_;    ///< allreduce overlapped with backward
  std::unique_ptr<FlatAdamW> optimizer_;                 ///< unsharded runs
  std::unique_ptr<ShardedAdamW> sharded_optimizer_;      ///< ZeRO stage 1 runs
  std::unique_ptr<ExponentialMovingAverage> ema_;
  std::unique_ptr<DynamicLossScaler> loss_scaler_;
  std::unique_ptr<ValidationLoss> validation_loss_;
  std::map<std::string, double> metrics_;
  std::string export_folder_;

  static constexpr int kMaxConsecutiveSkips = 100;
  int consecutive_skips_ = 0;
  TrainProgress progress_;
  std::vector<double> loss_history_;
  bool stop_requested_ = false;
  bool stopped_by_signal_ = false;
};

}  // namespace sdtrain

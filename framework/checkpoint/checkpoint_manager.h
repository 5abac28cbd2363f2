#pragma once
/// Checkpoints that resume exactly and are never half-written.
///
/// Layout: <output_dir>/checkpoints/step-<step:08>/ holding
///   model.safetensors        trained weights by parameter name (rank 0)
///   ema.safetensors          EMA weights by parameter name (rank 0, when EMA is on)
///   optimizer.safetensors    AdamW state by parameter name: <name>.exp_avg / <name>.exp_avg_sq
///   trainer_state.json       step, epoch, data position, world size, LR/EMA counters, losses,
///                            fp16 loss-scaler state, callback states, the effective config
///   manifest.json            every file above with its size and SHA-256 (written last)
/// A checkpoint is written into a temporary sibling folder, each file fsync'ed, and renamed into
/// place only when complete; the previous checkpoints are untouched until then, and old ones are
/// deleted (keep-last-k) only after the new one is in place.
#include <map>
#include <string>
#include <vector>

#include "framework/dist/communicator.h"
#include "framework/train/adamw.h"
#include "framework/train/ema.h"
#include "framework/train/flat_parameters.h"
#include "proto/sdtrain.pb.h"

namespace sdtrain {

/// Everything besides tensors that a resume needs.
struct TrainingState {
  int64_t step = 0;
  int64_t epoch = 0;
  int64_t batch_in_epoch = 0;  ///< micro-batches of `epoch` already consumed (per rank)
  int64_t images_seen = 0;
  int world_size = 1;
  int64_t ema_updates = 0;
  std::vector<double> loss_history;
  std::map<std::string, std::string> callback_states;  ///< by callback index and type
  /// The fp16 loss scaler's scale and finite-step count; 0 when the run has no scaler (and in
  /// checkpoints written before the scaler existed).
  double loss_scale = 0;
  int64_t loss_scale_growth_tracker = 0;
};

class CheckpointManager {
 public:
  CheckpointManager(std::string output_dir, int keep_last, const RankInfo& rank_info, Communicator& communicator);

  /// Writes a checkpoint for `state.step` (collective: every rank calls it). Returns its folder.
  std::string save(const TrainingState& state, FlatParameters& parameters, FlatAdamW& optimizer,
                   ExponentialMovingAverage* ema, const TrainConfig& config);

  /// The checkpoint folder to resume from: `spec` "auto" → the newest complete checkpoint under
  /// output_dir ("" if none), otherwise `spec` itself (must be complete). Throws CheckpointError.
  std::string resolve(const std::string& spec) const;

  /// Verifies every file's size and SHA-256 against the manifest, then loads weights, optimizer
  /// and EMA state into the given objects and returns the rest. Throws FormatError naming the
  /// file that fails verification.
  TrainingState load(const std::string& folder, FlatParameters& parameters, FlatAdamW& optimizer,
                     ExponentialMovingAverage* ema) const;

  /// Complete checkpoint folders, oldest first.
  std::vector<std::string> list() const;

 private:
  std::string checkpoints_dir_;
  int keep_last_;
  RankInfo rank_info_;
  Communicator& communicator_;
};

}  // namespace sdtrain

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
///
/// Ranks: every rank writes its part (today rank 0 writes all of the above, the other ranks have
/// nothing of their own), then a barrier with its own timeout (checkpoint_fence_timeout_s(), not
/// the collective timeout: writing a multi-GB model can take longer than any collective)
/// fences the writing; only then rank 0 writes the manifest, renames the folder into place and
/// deletes old checkpoints and leftovers of interrupted writes; a second fenced barrier makes every
/// rank return only once the checkpoint is in place.
///
/// Test hook (test-only, never set it in production): SDTRAIN_TEST_CRASH_IN_CHECKPOINT=<step>
/// makes rank 0 _exit(86) while writing the checkpoint of that step, after model.safetensors and
/// before the manifest, as a power cut or kill -9 would.
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
  /// Absolute folder of the run's config file: relative paths in the stored config (pretrained
  /// weights, data) resolve against it when the checkpoint is used outside the run (sdsample).
  std::string config_dir;
  /// The fp16 loss scaler's scale and finite-step count; 0 when the run has no scaler (and in
  /// checkpoints written before the scaler existed).
  double loss_scale = 0;
  int64_t loss_scale_growth_tracker = 0;
};

/// Checks every file the manifest of checkpoint `folder` lists: present, with the listed size
/// and SHA-256. Throws FormatError naming the first file that fails (or the malformed manifest).
void verify_checkpoint_files(const std::string& folder);

/// How long ranks wait for each other around a checkpoint write: 30 minutes, or the collective
/// timeout when that is longer (writing several GB to a network file system is slow, and
/// rank 0 alone writes the model while the others wait).
inline double checkpoint_fence_timeout_s(double collective_timeout_s) {
  return collective_timeout_s > 1800.0 ? collective_timeout_s : 1800.0;
}

class CheckpointManager {
 public:
  /// `fence_timeout_s`: how long the ranks wait for each other around writing (see above).
  CheckpointManager(std::string output_dir, int keep_last, const RankInfo& rank_info, Communicator& communicator,
                    double fence_timeout_s);

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
  /// Rank 0: keep-last-k, and leftovers of interrupted writes.
  void remove_old() const;

  std::string checkpoints_dir_;
  int keep_last_;
  RankInfo rank_info_;
  Communicator& communicator_;
  double fence_timeout_s_;
};

}  // namespace sdtrain

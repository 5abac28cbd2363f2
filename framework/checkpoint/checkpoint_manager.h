#pragma once
/// Checkpoints that resume exactly and are never half-written.
///
/// Layout: <output_dir>/checkpoints/step-<step:08>/ holding
///   model.safetensors        trained weights by parameter name (rank 0)
///   ema.safetensors          EMA weights by parameter name (rank 0, when EMA is on)
///   optimizer-rank-<r:05>-of-<W:05>.safetensors
///                            rank r's slice of the flat AdamW state, written by rank r (see
///                            optimizer_shards.h): ZeRO-1 ranks write the state they keep, unsharded
///                            ranks the same slices of their replicated state
///   rank-<r:05>.json         rank r's own state, written by rank r: its data-loader position
///                            (epoch, micro-batches consumed, micro-batch size). No RNG state: every
///                            random draw of training comes from per-sample seeds derived from
///                            (run.seed, epoch, dataset index), so there is none to save
///   trainer_state.json       step, epoch, data position, world size, LR/EMA counters, losses,
///                            fp16 loss-scaler state, callback states, the effective config (rank 0)
///   manifest.json            step, epoch, world size, the config, the optimizer shards and rank
///                            files, and every file above with its size and SHA-256 (rank 0, last)
/// Checkpoints written before the shards hold one optimizer.safetensors (the whole state by
/// parameter name) and no rank files; they still load (the data position then assumes the
/// micro-batch size did not change).
///
/// A checkpoint is written into a temporary sibling folder, each file fsync'ed, and renamed into
/// place only when complete; the previous checkpoints are untouched until then, and old ones are
/// deleted (keep-last-k) only after the new one is in place.
///
/// Ranks: rank 0 prepares the temporary folder and a fenced barrier lets the others in; every rank
/// writes its files, hashes them (SHA-256, while they are in its page cache) and leaves their
/// names, sizes and digests in a sidecar `.rank-<r:05>.files.json`; a barrier with its own timeout
/// (checkpoint_fence_timeout_s(), not the collective timeout: writing a multi-GB model can take
/// longer than any collective) fences the writing; only then rank 0 collects the sidecars (it never
/// re-reads the other ranks' data), writes the manifest, renames the folder into place and deletes
/// old checkpoints and leftovers of interrupted writes; a second fenced barrier makes every rank
/// return only once the checkpoint is in place.
///
/// Resume: every rank verifies every listed file against the manifest, then reads the model, EMA
/// and trainer state, and the part of the optimizer state it keeps from the shards of the world
/// size that wrote them (ZeRO-1: its new slice, from the overlapping parts of the old shards;
/// unsharded: all of them), so a checkpoint of W ranks resumes on any number of ranks.
///
/// Fault point (framework/util/fault_points.h): checkpoint.after_model_write, indexed by the
/// checkpoint's step, on rank 0 after model.safetensors and before the other files; the rule
/// `checkpoint.after_model_write:4=crash` leaves step 4 a partial folder, as kill -9 would.
#include <map>
#include <set>
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
  int batch_size = 0;          ///< micro-batch size of the run that wrote it (per rank)
  /// Samples of `epoch` all ranks together consumed (from the rank files); -1 for checkpoints
  /// without rank files, whose position is batch_in_epoch x world_size x the micro-batch size.
  int64_t samples_in_epoch = -1;
  int64_t images_seen = 0;
  int world_size = 1;
  int64_t ema_updates = 0;
  std::vector<double> loss_history;
  /// Keys of the distinct bad samples the data loader skipped (data.bad_data). Saved: this rank's
  /// (in its rank file). Loaded: the same rank's when the world size is unchanged, else the union
  /// of every rank's (a rank's limit then counts what any rank had met: never fewer).
  std::set<std::string> bad_samples;
  std::map<std::string, std::string> callback_states;  ///< by callback index and type
  /// Absolute folder of the run's config file: relative paths in the stored config (pretrained
  /// weights, data) resolve against it when the checkpoint is used outside the run (sdsample).
  std::string config_dir;
  /// The fp16 loss scaler's scale and finite-step count; 0 when the run has no scaler (and in
  /// checkpoints written before the scaler existed).
  double loss_scale = 0;
  int64_t loss_scale_growth_tracker = 0;
};

/// Checks the files `names` of checkpoint `folder` against its manifest: listed, present, with
/// the listed size and SHA-256. Throws FormatError naming the first file that fails (or the
/// malformed manifest). Readers pass what they are about to read, so a rank resuming from a
/// checkpoint of many ranks hashes only the optimizer shards it needs.
void verify_checkpoint_files(const std::string& folder, const std::set<std::string>& names);

/// How long ranks wait for each other around a checkpoint write: 30 minutes, or the collective
/// timeout when that is longer (writing several GB to a network file system is slow, and
/// rank 0 alone writes the model while the others wait).
/// Where each of `world_size` ranks with micro-batches of `batch_size` resumes in `state.epoch`:
/// the micro-batches it skips so that together they continue at the checkpoint's sample (the
/// sampler deals the epoch's permutation out in global batches of world_size x batch_size).
/// Throws ConfigError when that sample falls inside a global batch of the new layout.
int64_t resumed_batch_in_epoch(const TrainingState& state, int world_size, int batch_size);

inline double checkpoint_fence_timeout_s(double collective_timeout_s) {
  return collective_timeout_s > 1800.0 ? collective_timeout_s : 1800.0;
}

class CheckpointManager {
 public:
  /// `fence_timeout_s`: how long the ranks wait for each other around writing (see above).
  CheckpointManager(std::string output_dir, int keep_last, const RankInfo& rank_info, Communicator& communicator,
                    double fence_timeout_s);

  /// Writes a checkpoint for `state.step` (collective: every rank calls it). Returns its folder.
  /// `optimizer` is the AdamW state this rank keeps: elements [optimizer_begin, optimizer_begin +
  /// optimizer.exp_avg().numel()) of the flat state (ZeRO-1: the rank's shard_range; unsharded:
  /// 0, everything). Rank r writes the slice shard_range(numel, r, world_size) of it.
  std::string save(const TrainingState& state, FlatParameters& parameters, FlatAdamW& optimizer,
                   int64_t optimizer_begin, ExponentialMovingAverage* ema, const TrainConfig& config);

  /// The checkpoint folder to resume from: `spec` "auto" → the newest complete checkpoint under
  /// output_dir ("" if none), otherwise `spec` itself (must be complete). Throws FormatError.
  std::string resolve(const std::string& spec) const;

  /// Verifies every file's size and SHA-256 against the manifest, then loads weights, EMA state
  /// and this rank's part of the optimizer state (`optimizer`, `optimizer_begin` as for save; read
  /// from the shards of whatever world size wrote them, or from a legacy optimizer.safetensors)
  /// into the given objects and returns the rest. Throws FormatError naming the file that fails
  /// verification or does not fit the model.
  TrainingState load(const std::string& folder, FlatParameters& parameters, FlatAdamW& optimizer,
                     int64_t optimizer_begin, ExponentialMovingAverage* ema) const;

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

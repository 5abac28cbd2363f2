#pragma once
/// Checkpoints that resume exactly and are never half-written, over the run's stateful parts.
///
/// The manager knows no part by name: the trainer registers each part that must survive a resume
/// (stateful.h) and the manager saves and loads them in registration order. Layout of
/// <output_dir>/checkpoints/step-<step:08>/ (format in checkpoint_folder.h):
///   trainer_state.json   every part's shared state (rank 0)
///   rank-<r:05>.json     every part's state of rank r (rank r)
///   <part files>         what the parts wrote (rank 0 the weights, each rank its optimizer shard)
///   manifest.json        step, world size, part names, rank files, and every file with its size
///                        and SHA-256 (rank 0, last)
///
/// A checkpoint is written into a temporary sibling folder, each file fsync'ed, and renamed into
/// place only when complete; the previous checkpoints are untouched until then, and old ones are
/// deleted (keep-last-k) only after the new one is in place.
///
/// Ranks: rank 0 prepares the temporary folder and a fenced barrier lets the others in; every rank
/// saves its parts, hashes the files it wrote (SHA-256, while they are in its page cache) and
/// leaves their names, sizes and digests in a sidecar `.rank-<r:05>.files.json`; a barrier with its
/// own timeout (checkpoint_fence_timeout_s(): writing a multi-GB model can take longer than any
/// collective) fences the writing; only then rank 0 collects the sidecars (it never re-reads the
/// other ranks' data), writes the manifest, renames the folder into place and deletes old
/// checkpoints and leftovers of interrupted writes; a second fenced barrier makes every rank
/// return only once the checkpoint is in place.
///
/// Failure (a full disk, an I/O error, on any rank): the failing rank still reaches each fence,
/// where one small allreduce tells every rank which ranks failed; rank 0 then removes the
/// temporary folder (putting back a same-step checkpoint it was replacing), and save() throws
/// std::runtime_error on every rank, naming the checkpoint, the stage, the failed ranks and (on a
/// failed rank) the file and the system's reason. Earlier checkpoints are never touched, and no
/// rank waits into the fence timeout for a rank that failed.
///
/// Resume: every rank loads every registered part; a part reads only the files it needs, each
/// verified against the manifest before it is opened, so a checkpoint of W ranks resumes on any
/// number of ranks without every rank hashing every shard.
///
/// Fault points (framework/util/fault_points.h), indexed by the checkpoint's step:
/// checkpoint.write on every rank before it writes its files (`checkpoint.write:4@rank1=enospc`:
/// rank 1's writes of step 4 fail as on a full disk); checkpoint.after_parts_write on rank 0
/// after its parts' files and before trainer_state.json, its rank file and the manifest (the rule
/// `checkpoint.after_parts_write:4=crash` leaves step 4 a partial folder, as kill -9 would).
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "framework/checkpoint/stateful.h"
#include "framework/dist/communicator.h"

namespace sdtrain {

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

  /// Registers `part` under `name` (unique, letters, digits, '_', ':', '.', '-'); std::logic_error
  /// otherwise. `part` must outlive the manager. Parts save and load in registration order.
  void add_part(const std::string& name, Stateful& part);

  /// Writes the checkpoint of optimizer step `step` (collective: every rank calls it). Returns its
  /// folder.
  std::string save(int64_t step);  // throws std::runtime_error when any rank failed (see above)

  /// The checkpoint folder to resume from: `spec` "auto" → the newest complete checkpoint under
  /// output_dir ("" if none), otherwise `spec` itself (must be complete). Throws FormatError.
  std::string resolve(const std::string& spec) const;

  /// Loads every registered part from checkpoint `folder`. Throws FormatError naming the file
  /// that fails verification or does not fit.
  void load(const std::string& folder);

  /// Complete checkpoint folders, oldest first.
  std::vector<std::string> list() const;

 private:
  /// Rank 0: keep-last-k, and leftovers of interrupted writes.
  void remove_old() const;
  /// Rank 0: collects the sidecars, writes the manifest and renames `temp_dir` onto `final_dir`.
  void complete(int64_t step, const std::filesystem::path& temp_dir, const std::filesystem::path& final_dir) const;
  /// Collective: the ranks (in order) that passed `failed` = true.
  std::vector<int> ranks_that_failed(bool failed);

  std::string checkpoints_dir_;
  int keep_last_;
  RankInfo rank_info_;
  Communicator& communicator_;
  double fence_timeout_s_;
  std::vector<std::pair<std::string, Stateful*>> parts_;
};

}  // namespace sdtrain

#pragma once
/// ZeRO stage 1 over the flat parameter buffer: each rank keeps the AdamW state (exp_avg,
/// exp_avg_sq) of one contiguous slice of the parameters and updates only that slice, then every
/// rank broadcasts its updated slice so all ranks hold all parameters again. Optimizer memory per
/// rank is 1/world_size of FlatAdamW's; the arithmetic is FlatAdamW's, element for element.
///
/// Checkpoints keep the unsharded layout (one full optimizer state): gather_state() assembles it
/// (collective), load_state() takes this rank's slice of it, so a resume may use any world size.
#include <cstdint>

#include <torch/torch.h>

#include "framework/dist/communicator.h"
#include "framework/train/adamw.h"
#include "proto/sdtrain.pb.h"

namespace sdtrain {

/// The slice [begin, end) of `numel` elements that `rank` of `world_size` owns: equal parts,
/// the first numel % world_size ranks one element longer.
struct ShardRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};
ShardRange shard_range(int64_t numel, int rank, int world_size);

class ShardedAdamW {
 public:
  /// `values` is the flat parameter buffer (same on every rank); state is allocated for this
  /// rank's slice only. The communicator must outlive this object.
  ShardedAdamW(const torch::Tensor& values, const OptimizerConfig& config, Communicator& communicator);

  /// Collective. Updates this rank's slice of `values` from the same slice of `grads` (already
  /// averaged over ranks), then broadcasts every rank's slice so `values` is whole everywhere.
  void step(torch::Tensor& values, const torch::Tensor& grads, double lr);

  /// Collective. Writes the whole optimizer state (laid out like `values`) into `full`, and its
  /// step count, on every rank.
  void gather_state(FlatAdamW& full);
  /// Takes this rank's slice (and the step count) from a whole state, e.g. one read from a
  /// checkpoint written at another world size.
  void load_state(FlatAdamW& full);

  const ShardRange& range() const { return range_; }
  int64_t step_count() const { return shard_.step_count(); }
  /// This rank's slice of the state.
  FlatAdamW& shard() { return shard_; }

 private:
  /// Every rank's slice of `flat` broadcast from its owner (exact bytes, unlike a sum).
  void all_gather_slices(torch::Tensor& flat);

  Communicator& communicator_;
  int64_t numel_;
  ShardRange range_;
  FlatAdamW shard_;
};

}  // namespace sdtrain

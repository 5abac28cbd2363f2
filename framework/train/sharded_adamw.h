#pragma once
/// ZeRO stage 1 over the flat parameter buffer: each rank keeps the AdamW state (exp_avg,
/// exp_avg_sq) of one contiguous slice of the parameters and updates only that slice, then every
/// rank broadcasts its updated slice so all ranks hold all parameters again. Optimizer memory per
/// rank is 1/world_size of FlatAdamW's; the arithmetic is FlatAdamW's, element for element.
///
/// Checkpoints hold the state as one shard per rank, cut by shard_range() (see
/// framework/train/optimizer_shards.h): each rank writes shard() as it is, and a resume at
/// any world size reads its new slice from the overlapping old shards. Nothing is ever gathered.
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
  /// rank's slice only. `segments` (of the whole buffer, as FlatAdamW's) are cut to the slice.
  /// The communicator must outlive this object.
  ShardedAdamW(const torch::Tensor& values, const OptimizerConfig& config, Communicator& communicator,
               const std::vector<AdamWSegment>& segments = {});

  /// Collective. Updates this rank's slice of `values` from the same slice of `grads` (already
  /// averaged over ranks), then broadcasts every rank's slice so `values` is whole everywhere.
  void step(torch::Tensor& values, const torch::Tensor& grads, double lr);

  const ShardRange& range() const { return range_; }
  int64_t step_count() const { return shard_.step_count(); }
  /// This rank's slice of the state (elements [range().begin, range().end) of the flat state).
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

#pragma once
/// The AdamW state in a checkpoint, split over the ranks that wrote it.
///
/// The flat state (exp_avg, exp_avg_sq, laid out like FlatParameters::values()) of `numel`
/// elements is cut with shard_range(numel, r, W) (framework/train/sharded_adamw.h); rank r of W
/// writes its slice to optimizer-rank-<r:05>-of-<W:05>.safetensors:
///   exp_avg, exp_avg_sq   1-D, elements [begin, end) of the flat state, in the state's dtype
///   __metadata__          format "sdtrain-optimizer-shard-1", rank, world_size, begin, end, numel,
///                         adam_step (the step count AdamW's bias correction uses), layout
///                         (FlatParameters::layout(); a shard without it is "standard")
/// With ZeRO-1 that slice is exactly the state the rank keeps; without it every rank keeps the
/// whole (replicated) state and still writes only its slice, so the writing is spread over ranks
/// and nothing is gathered.
///
/// A reader asks for any range of the state and gets it from the shards that overlap it, whatever
/// the world size that wrote them (ZeRO-1: the new slice; unsharded: everything). Only the
/// overlapping bytes of each file are read (the files are memory-mapped).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "framework/checkpoint/stateful.h"
#include "framework/train/adamw.h"

namespace sdtrain {

/// The file name of rank `rank`'s shard of a checkpoint written by `world_size` ranks.
std::string optimizer_shard_name(int rank, int world_size);

/// The ranks whose shards OptimizerShardState::load_state opens for a reader holding elements
/// [held_begin, held_end) of a flat state of `numel` elements written by `world_size` ranks:
/// those overlapping the range, and always rank 0 (its header carries the step count).
std::vector<int> optimizer_shards_to_read(int world_size, int64_t numel, int64_t held_begin, int64_t held_end);

/// The checkpoint part "optimizer": the AdamW state this rank keeps, `held`, holding elements
/// [held_begin, held_begin + held.exp_avg().numel()) of the flat state of `numel` elements
/// (ZeRO-1: the rank's shard_range; unsharded: 0, everything).
/// Save: rank r writes its shard_range(numel, r, W) slice (std::logic_error if `held` does not
/// cover it). Load: fills `held` and its step count from the shards of whatever world size wrote
/// the checkpoint, verifying each shard it opens; FormatError naming the file when a shard is
/// missing, describes another state size or range (another model), another element layout
/// (channels-last on in one run and off in the other), or disagrees on the step count.
class OptimizerShardState final : public Stateful {
 public:
  OptimizerShardState(FlatAdamW& held, int64_t held_begin, int64_t numel, std::string layout)
      : held_(held), held_begin_(held_begin), numel_(numel), layout_(std::move(layout)) {}
  void save_state(CheckpointWriter& out) override;
  void load_state(const CheckpointReader& in) override;

 private:
  FlatAdamW& held_;
  int64_t held_begin_;
  int64_t numel_;
  std::string layout_;
};

}  // namespace sdtrain

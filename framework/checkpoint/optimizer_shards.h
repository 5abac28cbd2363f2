#pragma once
/// The AdamW state in a checkpoint, split over the ranks that wrote it.
///
/// The flat state (exp_avg, exp_avg_sq, laid out like FlatParameters::values()) of `numel`
/// elements is cut with shard_range(numel, r, W) (framework/train/sharded_adamw.h); rank r of W
/// writes its slice to optimizer-rank-<r:05>-of-<W:05>.safetensors:
///   exp_avg, exp_avg_sq   1-D, elements [begin, end) of the flat state, in the state's dtype
///   __metadata__          format "sdtrain-optimizer-shard-1", rank, world_size, begin, end, numel,
///                         adam_step (the step count AdamW's bias correction uses)
/// With ZeRO-1 that slice is exactly the state the rank keeps; without it every rank keeps the
/// whole (replicated) state and still writes only its slice, so the writing is spread over ranks
/// and nothing is gathered.
///
/// A reader asks for any range of the state and gets it from the shards that overlap it, whatever
/// the world size that wrote them (ZeRO-1: the new slice; unsharded: everything). Only the
/// overlapping bytes of each file are read (the files are memory-mapped).
///
/// Checkpoints written before the shards (one optimizer.safetensors with <name>.exp_avg /
/// <name>.exp_avg_sq per parameter and metadata adam_step) are read by read_legacy_optimizer.
#include <cstdint>
#include <string>
#include <vector>

#include "framework/train/adamw.h"
#include "framework/train/flat_parameters.h"

namespace sdtrain {

/// The file name of rank `rank`'s shard of a checkpoint written by `world_size` ranks.
std::string optimizer_shard_name(int rank, int world_size);

/// The legacy single-file optimizer state (read only).
inline constexpr const char* kLegacyOptimizerFile = "optimizer.safetensors";

/// Writes rank `rank`'s shard into `folder` (atomically, fsync'ed) and returns its path. `held` is
/// the state this rank keeps: elements [held_begin, held_begin + held.exp_avg().numel()) of the
/// flat state of `numel` elements; it must cover the rank's shard_range (std::logic_error if not).
std::string write_optimizer_shard(const std::string& folder, FlatAdamW& held, int64_t held_begin, int64_t numel,
                                  int rank, int world_size);

/// The ranks whose shards read_optimizer_shards opens for a reader holding elements
/// [held_begin, held_end) of a flat state of `numel` elements written by `world_size` ranks:
/// those overlapping the range, and always rank 0 (its header carries the step count).
std::vector<int> optimizer_shards_to_read(int world_size, int64_t numel, int64_t held_begin, int64_t held_end);

/// Fills `held` (elements [held_begin, held_begin + held.exp_avg().numel()) of a flat state of
/// `numel` elements) and its step count from the shards that `world_size` ranks wrote into
/// `folder`. Throws FormatError naming the file when a shard is missing, describes another
/// state size or range (another model), or disagrees on the step count.
void read_optimizer_shards(const std::string& folder, int world_size, int64_t numel, FlatAdamW& held,
                           int64_t held_begin);

/// The same from a legacy optimizer.safetensors (tensors by parameter name, as `parameters`
/// names and lays them out). FormatError naming the file and tensor on a missing tensor or a
/// shape the model does not have.
void read_legacy_optimizer(const std::string& path, const FlatParameters& parameters, FlatAdamW& held,
                           int64_t held_begin);

}  // namespace sdtrain

#include "framework/train/sharded_adamw.h"

#include <algorithm>

namespace sdtrain {

ShardRange shard_range(int64_t numel, int rank, int world_size) {
  const int64_t base = numel / world_size;
  const int64_t extra = numel % world_size;
  ShardRange range;
  range.begin = rank * base + std::min<int64_t>(rank, extra);
  range.end = range.begin + base + (rank < extra ? 1 : 0);
  return range;
}

ShardedAdamW::ShardedAdamW(const torch::Tensor& values, const OptimizerConfig& config, Communicator& communicator,
                           const std::vector<AdamWSegment>& segments)
    : communicator_(communicator),
      numel_(values.numel()),
      range_(shard_range(values.numel(), communicator.rank(), communicator.world_size())),
      shard_(values.narrow(0, range_.begin, range_.size()), config,
             segments.empty() ? std::vector<AdamWSegment>{} : segments_within(segments, range_.begin, range_.end)) {}

void ShardedAdamW::all_gather_slices(torch::Tensor& flat) {
  for (int owner = 0; owner < communicator_.world_size(); ++owner) {
    const ShardRange range = shard_range(numel_, owner, communicator_.world_size());
    if (range.size() == 0) continue;
    torch::Tensor slice = flat.narrow(0, range.begin, range.size());
    communicator_.broadcast(slice, owner);
  }
}

void ShardedAdamW::step(torch::Tensor& values, const torch::Tensor& grads, double lr) {
  torch::NoGradGuard no_grad;
  torch::Tensor slice = values.narrow(0, range_.begin, range_.size());
  shard_.step(slice, grads.narrow(0, range_.begin, range_.size()), lr);
  all_gather_slices(values);
}

}  // namespace sdtrain

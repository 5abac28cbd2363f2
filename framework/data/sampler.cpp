#include "framework/data/sampler.h"

#include <algorithm>
#include <numeric>
#include <string>

#include <c10/util/Exception.h>

#include "sdtrain/errors.h"

namespace sdtrain {
namespace {
uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/// A draw in [0, n) from the splitmix64 stream: the 128-bit product maps 64 random bits to the
/// range, unbiased enough for any dataset size.
int64_t draw_below(uint64_t& state, int64_t n) {
  return static_cast<int64_t>((static_cast<unsigned __int128>(splitmix64(state)) * static_cast<unsigned __int128>(n)) >>
                              64);
}
}  // namespace

uint64_t mix_seed(uint64_t seed, uint64_t a, uint64_t b) {
  uint64_t state = seed;
  uint64_t out = splitmix64(state);
  state ^= a * 0xD6E8FEB86659FD93ULL;
  out ^= splitmix64(state);
  state ^= b * 0xA0761D6478BD642FULL;
  return out ^ splitmix64(state);
}

double uniform_from_seed(uint64_t seed) {
  uint64_t state = seed;
  return static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53;
}

DistributedSampler::DistributedSampler(int64_t dataset_size, int64_t batch_size, int rank, int world_size,
                                       bool shuffle, uint64_t seed, int resolution, ShardShuffle shards)
    : dataset_size_(dataset_size),
      batch_size_(batch_size),
      rank_(rank),
      world_size_(world_size),
      shuffle_(shuffle),
      seed_(seed),
      resolution_(resolution),
      shards_(std::move(shards)),
      batches_per_epoch_(dataset_size / (batch_size * world_size)) {
  if (batches_per_epoch_ == 0) {
    throw ConfigError("data.batch_size: the training set has " + std::to_string(dataset_size) +
                      " samples, fewer than one global batch of " + std::to_string(world_size) + " ranks x " +
                      std::to_string(batch_size) + " images");
  }
}

void seeded_shuffle(std::vector<int64_t>& order, uint64_t state) {
  for (auto i = static_cast<int64_t>(order.size()) - 1; i > 0; --i) {
    std::swap(order[i], order[draw_below(state, i + 1)]);
  }
}

std::vector<int64_t> seeded_permutation(int64_t size, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(size);
  std::iota(order.begin(), order.end(), 0);
  seeded_shuffle(order, mix_seed(seed, static_cast<uint64_t>(epoch), 0x5A4D504C45ULL));
  return order;
}

std::vector<int64_t> shard_order(int64_t shard_count, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(shard_count);
  std::iota(order.begin(), order.end(), 0);
  seeded_shuffle(order, mix_seed(seed, static_cast<uint64_t>(epoch), 0x5348415244ULL));
  return order;
}

std::vector<int64_t> sharded_permutation(const ShardShuffle& shards, uint64_t seed, int64_t epoch) {
  const auto shard_count = static_cast<int64_t>(shards.shard_ends.size());
  const int64_t size = shard_count == 0 ? 0 : shards.shard_ends.back();
  uint64_t state = mix_seed(seed, static_cast<uint64_t>(epoch), 0x4255464645ULL);
  const int64_t capacity = std::max<int64_t>(shards.buffer, 1);
  std::vector<int64_t> order;
  order.reserve(size);
  std::vector<int64_t> buffer;
  buffer.reserve(std::min(capacity, size));
  for (int64_t shard : shard_order(shard_count, seed, epoch)) {
    const int64_t begin = shard == 0 ? 0 : shards.shard_ends[shard - 1];
    for (int64_t index = begin; index < shards.shard_ends[shard]; ++index) {
      if (static_cast<int64_t>(buffer.size()) < capacity) {
        buffer.push_back(index);
        continue;
      }
      const auto slot = static_cast<std::size_t>(draw_below(state, capacity));
      order.push_back(buffer[slot]);
      buffer[slot] = index;
    }
  }
  seeded_shuffle(buffer, splitmix64(state));
  order.insert(order.end(), buffer.begin(), buffer.end());
  return order;
}

std::vector<int64_t> epoch_order(int64_t size, bool shuffle, uint64_t seed, int64_t epoch, const ShardShuffle& shards) {
  if (shuffle && !shards.shard_ends.empty()) {
    TORCH_CHECK(shards.shard_ends.back() == size, "epoch_order: shards end at ", shards.shard_ends.back(),
                " for a dataset of ", size);
    return sharded_permutation(shards, seed, epoch);
  }
  if (shuffle) return seeded_permutation(size, seed, epoch);
  std::vector<int64_t> order(size);
  std::iota(order.begin(), order.end(), 0);
  return order;
}

std::vector<int64_t> DistributedSampler::permutation(int64_t epoch) const {
  return epoch_order(dataset_size_, shuffle_, seed_, epoch, shards_);
}

MicroBatchPlan DistributedSampler::micro_batch(int64_t epoch, int64_t batch) const {
  return {batch_indices(epoch, batch), resolution_, resolution_};
}

std::vector<int64_t> DistributedSampler::batch_indices(int64_t epoch, int64_t batch) const {
  if (epoch != cached_epoch_) {
    cached_permutation_ = permutation(epoch);
    cached_epoch_ = epoch;
  }
  const int64_t start = (batch * world_size_ + rank_) * batch_size_;
  return std::vector<int64_t>(cached_permutation_.begin() + start, cached_permutation_.begin() + start + batch_size_);
}

}  // namespace sdtrain

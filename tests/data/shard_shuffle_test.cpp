// The shard-by-shard shuffle of sharded datasets (data.shuffle_buffer): a complete, seeded
// permutation that reads few shards at a time, dealt by both samplers like any other order.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>

#include "framework/data/bucket_sampler.h"
#include "framework/data/sampler.h"

namespace sdtrain {
namespace {

/// 40 shards of 25 samples, the last one short.
ShardShuffle forty_shards(int64_t buffer) {
  ShardShuffle shards;
  for (int64_t s = 1; s <= 40; ++s) shards.shard_ends.push_back(s == 40 ? 990 : s * 25);
  shards.buffer = buffer;
  return shards;
}

int64_t shard_of(const ShardShuffle& shards, int64_t index) {
  return std::upper_bound(shards.shard_ends.begin(), shards.shard_ends.end(), index) - shards.shard_ends.begin();
}

TEST(ShardShuffle, IsASeededPermutationThatReadsAFewShardsAtATime) {
  const ShardShuffle shards = forty_shards(50);
  const std::vector<int64_t> order = sharded_permutation(shards, 7, 3);
  ASSERT_EQ(order.size(), 990u);
  EXPECT_EQ(std::set<int64_t>(order.begin(), order.end()).size(), 990u);
  EXPECT_EQ(order, sharded_permutation(shards, 7, 3));
  EXPECT_NE(order, sharded_permutation(shards, 7, 4));
  EXPECT_NE(order, sharded_permutation(shards, 8, 3));
  // The stream: shards in their seeded order, each in its own order. A sample leaves the buffer
  // no sooner than `buffer` places before it entered.
  std::vector<int64_t> stream_position(990);
  int64_t position = 0;
  for (int64_t shard : shard_order(40, 7, 3)) {
    for (int64_t i = shard == 0 ? 0 : shards.shard_ends[shard - 1]; i < shards.shard_ends[shard]; ++i) {
      stream_position[i] = position++;
    }
  }
  EXPECT_EQ(position, 990);
  std::size_t open_shards_max = 0;
  for (std::size_t out = 0; out < order.size(); ++out) {
    EXPECT_GE(static_cast<int64_t>(out), stream_position[order[out]] - 50) << "sample " << order[out];
    // Shards with samples in a window of 50 consecutive outputs: a few, not all forty.
    if (out + 50 <= order.size()) {
      std::set<int64_t> window;
      for (std::size_t k = out; k < out + 50; ++k) window.insert(shard_of(shards, order[k]));
      open_shards_max = std::max(open_shards_max, window.size());
    }
  }
  EXPECT_LE(open_shards_max, 12u);
  EXPECT_GE(open_shards_max, 3u) << "the buffer mixes neighbouring shards";
  // Without a buffer, the stream itself: each shard whole and in order, in the shards' order.
  std::vector<int64_t> stream(990);
  for (int64_t i = 0; i < 990; ++i) stream[stream_position[i]] = i;
  EXPECT_EQ(sharded_permutation(forty_shards(0), 7, 3), stream);
  EXPECT_EQ(sharded_permutation(forty_shards(1), 7, 3), stream);
}

TEST(ShardShuffle, BothSamplersDealItAndRanksSplitTheGlobalBatch) {
  const ShardShuffle shards = forty_shards(30);
  const std::vector<int64_t> order = sharded_permutation(shards, 11, 2);
  DistributedSampler one(990, 6, 0, 1, true, 11, 16, shards);
  DistributedSampler rank0(990, 3, 0, 2, true, 11, 16, shards);
  DistributedSampler rank1(990, 3, 1, 2, true, 11, 16, shards);
  EXPECT_EQ(one.permutation(2), order);
  for (int64_t batch = 0; batch < one.batches_per_epoch(); ++batch) {
    std::vector<int64_t> both = rank0.batch_indices(2, batch);
    const std::vector<int64_t> second = rank1.batch_indices(2, batch);
    both.insert(both.end(), second.begin(), second.end());
    ASSERT_EQ(both, one.batch_indices(2, batch)) << batch;
  }
  // Unshuffled runs keep the dataset order whatever the shards.
  EXPECT_EQ(DistributedSampler(990, 6, 0, 1, false, 11, 16, shards).batch_indices(0, 1),
            (std::vector<int64_t>{6, 7, 8, 9, 10, 11}));
  // The bucket sampler splits the same order by bucket: with one bucket its global batches are
  // the order's consecutive runs (in a seeded batch order).
  BucketSampler buckets(std::vector<int>(990, 0), {BucketResolution{16, 16}}, 6, 0, 1, true, 11, shards);
  std::set<std::vector<int64_t>> runs;
  for (std::size_t start = 0; start + 6 <= order.size(); start += 6) {
    runs.insert(std::vector<int64_t>(order.begin() + start, order.begin() + start + 6));
  }
  ASSERT_EQ(buckets.batches_per_epoch(), 165);
  for (int64_t batch = 0; batch < buckets.batches_per_epoch(); ++batch) {
    EXPECT_TRUE(runs.count(buckets.micro_batch(2, batch).indices)) << batch;
  }
}

}  // namespace
}  // namespace sdtrain

// Which optimizer shards a resuming rank opens (and so verifies): only those overlapping the
// state it keeps, plus rank 0's for the step count.
#include <gtest/gtest.h>

#include <vector>

#include "framework/train/optimizer_shards.h"
#include "framework/train/sharded_adamw.h"

namespace sdtrain {
namespace {

TEST(OptimizerShards, AReaderOpensOnlyTheShardsOverlappingItsRange) {
  const int64_t numel = 10;  // shards of 3 ranks: shard_range gives [0,4) [4,7) [7,10) or similar
  const ShardRange first = shard_range(numel, 0, 3), second = shard_range(numel, 1, 3), third = shard_range(numel, 2, 3);
  ASSERT_EQ(first.end, second.begin);
  ASSERT_EQ(second.end, third.begin);
  // Unsharded state (every element): all shards.
  EXPECT_EQ(optimizer_shards_to_read(3, numel, 0, numel), (std::vector<int>{0, 1, 2}));
  // ZeRO-1 at the same world size: its own shard, plus rank 0's header.
  EXPECT_EQ(optimizer_shards_to_read(3, numel, third.begin, third.end), (std::vector<int>{0, 2}));
  EXPECT_EQ(optimizer_shards_to_read(3, numel, first.begin, first.end), (std::vector<int>{0}));
  // A range straddling a boundary (another world size) opens both sides, not the third.
  EXPECT_EQ(optimizer_shards_to_read(3, numel, second.begin - 1, second.begin + 1), (std::vector<int>{0, 1}));
  EXPECT_EQ(optimizer_shards_to_read(3, numel, second.end - 1, second.end + 1), (std::vector<int>{0, 1, 2}));
  // An empty range (a rank holding no state) still reads the step count.
  EXPECT_EQ(optimizer_shards_to_read(3, numel, numel, numel), (std::vector<int>{0}));
}

}  // namespace
}  // namespace sdtrain

// The bucket sampler: one bucket per micro-batch, every trained sample once per epoch (padding
// aside), ranks' slices equal one rank's global batch, epochs seeded and reproducible.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "framework/data/bucket_sampler.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

const std::vector<BucketResolution> kBuckets = {{64, 192}, {128, 128}, {192, 64}};

/// 23 samples: 7 square, 11 wide, 3 tall (1, 8, 22), 2 not trained (-1).
std::vector<int> bucket_of() {
  std::vector<int> out;
  for (int i = 0; i < 23; ++i) out.push_back(i % 11 == 10 ? -1 : (i % 3 == 0 ? 1 : (i % 7 == 1 ? 0 : 2)));
  return out;
}

std::map<int, int64_t> bucket_counts() {
  std::map<int, int64_t> counts;
  for (int bucket : bucket_of()) ++counts[bucket];
  return counts;
}

TEST(BucketSampler, EveryMicroBatchHoldsOneBucketAndAnEpochEverySample) {
  const auto counts = bucket_counts();
  ASSERT_EQ(counts.at(-1), 2);
  const int64_t global = 4;  // 2 ranks x 2
  int64_t expected_batches = 0;
  for (int bucket = 0; bucket < 3; ++bucket) expected_batches += (counts.at(bucket) + global - 1) / global;
  const std::vector<int> buckets_of = bucket_of();
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    std::map<int64_t, int> seen;
    for (int rank = 0; rank < 2; ++rank) {
      const BucketSampler sampler(buckets_of, kBuckets, 2, rank, 2, true, 5);
      ASSERT_EQ(sampler.batches_per_epoch(), expected_batches);
      for (int64_t b = 0; b < sampler.batches_per_epoch(); ++b) {
        const MicroBatchPlan plan = sampler.micro_batch(epoch, b);
        ASSERT_EQ(plan.indices.size(), 2u);
        for (int64_t index : plan.indices) {
          ASSERT_GE(buckets_of[index], 0) << "an untrained sample was dealt";
          const BucketResolution& bucket = kBuckets[buckets_of[index]];
          EXPECT_EQ(plan.width, bucket.width);
          EXPECT_EQ(plan.height, bucket.height);
          ++seen[index];
        }
      }
    }
    EXPECT_EQ(static_cast<int64_t>(seen.size()), 21) << "every trained sample, epoch " << epoch;
    int64_t repeats = 0;
    for (const auto& [index, times] : seen) repeats += times - 1;
    EXPECT_EQ(repeats, expected_batches * global - 21) << "only the padding repeats";
  }
}

// The union of the ranks' micro-batch b is one rank's micro-batch b of the global batch, in rank
// order: 2 x B = 1 x 2B, as for the square sampler.
TEST(BucketSampler, RanksSplitTheGlobalBatchOfOneRank) {
  const BucketSampler single(bucket_of(), kBuckets, 4, 0, 1, true, 9);
  const BucketSampler rank0(bucket_of(), kBuckets, 2, 0, 2, true, 9);
  const BucketSampler rank1(bucket_of(), kBuckets, 2, 1, 2, true, 9);
  ASSERT_EQ(single.batches_per_epoch(), rank0.batches_per_epoch());
  for (int64_t b = 0; b < single.batches_per_epoch(); ++b) {
    std::vector<int64_t> both = rank0.micro_batch(1, b).indices;
    const std::vector<int64_t> second = rank1.micro_batch(1, b).indices;
    both.insert(both.end(), second.begin(), second.end());
    EXPECT_EQ(both, single.micro_batch(1, b).indices) << "micro-batch " << b;
  }
}

TEST(BucketSampler, EpochsAreSeededAndReproducible) {
  const BucketSampler sampler(bucket_of(), kBuckets, 2, 0, 1, true, 3);
  const BucketSampler again(bucket_of(), kBuckets, 2, 0, 1, true, 3);
  const BucketSampler other_seed(bucket_of(), kBuckets, 2, 0, 1, true, 4);
  auto epoch_of = [](const BucketSampler& s, int64_t epoch) {
    std::vector<int64_t> all;
    for (int64_t b = 0; b < s.batches_per_epoch(); ++b) {
      const auto indices = s.micro_batch(epoch, b).indices;
      all.insert(all.end(), indices.begin(), indices.end());
    }
    return all;
  };
  EXPECT_EQ(epoch_of(sampler, 2), epoch_of(again, 2));
  EXPECT_NE(epoch_of(sampler, 2), epoch_of(sampler, 3));
  EXPECT_NE(epoch_of(sampler, 2), epoch_of(other_seed, 2));
  // Without shuffling: buckets in order, samples in dataset order, padded from the bucket's start.
  const BucketSampler ordered(bucket_of(), kBuckets, 2, 0, 1, false, 3);
  const MicroBatchPlan first = ordered.micro_batch(0, 0);
  EXPECT_EQ(first.width, 64);
  EXPECT_EQ(first.indices, (std::vector<int64_t>{1, 8}));
  EXPECT_EQ(ordered.micro_batch(0, 1).indices, (std::vector<int64_t>{22, 1})) << "a bucket of 3 padded to 4";
}

TEST(BucketSampler, SparesComeFromTheSameBucket) {
  const std::vector<int> buckets_of = bucket_of();
  const BucketSampler sampler(buckets_of, kBuckets, 2, 0, 1, true, 3);
  for (int64_t index = 0; index < static_cast<int64_t>(buckets_of.size()); ++index) {
    if (buckets_of[index] < 0) continue;
    const int64_t count = sampler.spare_count(index);
    EXPECT_EQ(count, bucket_counts().at(buckets_of[index]));
    EXPECT_EQ(sampler.spare(index, 0), index);
    std::set<int64_t> spares;
    for (int64_t attempt = 0; attempt < count; ++attempt) {
      const int64_t spare = sampler.spare(index, attempt);
      EXPECT_EQ(buckets_of[spare], buckets_of[index]);
      spares.insert(spare);
    }
    EXPECT_EQ(static_cast<int64_t>(spares.size()), count);
  }
}

TEST(BucketSampler, RefusesAPlanWithoutTrainedSamples) {
  try {
    BucketSampler sampler({-1, -1}, kBuckets, 2, 0, 1, true, 3);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& error) {
    EXPECT_STREQ(error.what(), "data.buckets: no sample of the training set fits a bucket");
  }
}

}  // namespace
}  // namespace sdtrain

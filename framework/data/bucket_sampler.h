#pragma once
/// The sampler of aspect-ratio buckets (data.buckets): every micro-batch holds samples of one
/// bucket.
///
/// Epoch e is planned from (seed, e) and the global batch G = W x B alone: the epoch's seeded
/// permutation of the dataset (epoch_order, the square sampler's) is split by bucket,
/// keeping its order; each bucket's samples are cut into global batches of G, the last one padded
/// with that bucket's first samples of the epoch (cyclically, so a bucket smaller than G repeats
/// its samples); the global batches are then put in a seeded order of their own. Rank r of W
/// takes the slice [r B, (r + 1) B) of each global batch. Hence within an epoch every trained
/// sample is seen at least once and only padding repeats one; the union over ranks equals one
/// rank with batch G; a resume with the same G (any W x B with the same product) continues the
/// same order.
#include <cstdint>
#include <vector>

#include "framework/data/buckets.h"
#include "framework/data/sampler.h"

namespace sdtrain {

class BucketSampler final : public BatchSampler {
 public:
  /// `bucket_of[i]` is sample i's index into `buckets`, or -1 for a sample not trained (dropped
  /// or unreadable). Throws ConfigError when no sample is trained.
  BucketSampler(std::vector<int> bucket_of, std::vector<BucketResolution> buckets, int64_t batch_size, int rank,
                int world_size, bool shuffle, uint64_t seed, ShardShuffle shards = {});

  int64_t batches_per_epoch() const override { return batches_per_epoch_; }
  MicroBatchPlan micro_batch(int64_t epoch, int64_t batch) const override;
  /// The samples of `index`'s bucket, in dataset order, cyclically from `index`.
  int64_t spare_count(int64_t index) const override;
  int64_t spare(int64_t index, int64_t attempt) const override;

  /// Global batches (of W x B) per epoch of each bucket: ceil(#samples / (W x B)).
  std::vector<int64_t> global_batches_per_bucket() const;

 private:
  struct GlobalBatch {
    int bucket = 0;
    std::vector<int64_t> samples;  ///< W x B dataset indices
  };
  std::vector<GlobalBatch> plan_epoch(int64_t epoch) const;

  std::vector<int> bucket_of_;
  std::vector<BucketResolution> buckets_;
  std::vector<std::vector<int64_t>> members_;  ///< per bucket, its samples in dataset order
  std::vector<int64_t> position_;              ///< sample i's place in members_[bucket_of_[i]]
  int64_t batch_size_;
  int rank_;
  int world_size_;
  bool shuffle_;
  uint64_t seed_;
  ShardShuffle shards_;
  int64_t batches_per_epoch_ = 0;
  mutable int64_t cached_epoch_ = -1;
  mutable std::vector<GlobalBatch> cached_plan_;
};

}  // namespace sdtrain

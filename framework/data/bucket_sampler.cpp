#include "framework/data/bucket_sampler.h"

#include <numeric>
#include <string>

#include <c10/util/Exception.h>

#include "sdtrain/errors.h"

namespace sdtrain {
namespace {
/// Mixed into (seed, epoch) for the order of the global batches, apart from the permutation's.
constexpr uint64_t kBatchOrderSalt = 0xB0C7E75ULL;
}  // namespace

BucketSampler::BucketSampler(std::vector<int> bucket_of, std::vector<BucketResolution> buckets, int64_t batch_size,
                             int rank, int world_size, bool shuffle, uint64_t seed, ShardShuffle shards)
    : bucket_of_(std::move(bucket_of)),
      buckets_(std::move(buckets)),
      members_(buckets_.size()),
      position_(bucket_of_.size(), -1),
      batch_size_(batch_size),
      rank_(rank),
      world_size_(world_size),
      shuffle_(shuffle),
      seed_(seed),
      shards_(std::move(shards)) {
  for (std::size_t i = 0; i < bucket_of_.size(); ++i) {
    const int bucket = bucket_of_[i];
    if (bucket < 0) continue;
    TORCH_CHECK(static_cast<std::size_t>(bucket) < buckets_.size(), "BucketSampler: sample ", i, " has bucket ",
                bucket, " of ", buckets_.size());
    position_[i] = static_cast<int64_t>(members_[bucket].size());
    members_[bucket].push_back(static_cast<int64_t>(i));
  }
  for (int64_t count : global_batches_per_bucket()) batches_per_epoch_ += count;
  if (batches_per_epoch_ == 0) throw ConfigError("data.buckets: no sample of the training set fits a bucket");
}

std::vector<int64_t> BucketSampler::global_batches_per_bucket() const {
  const int64_t global = batch_size_ * world_size_;
  std::vector<int64_t> counts;
  for (const auto& members : members_) counts.push_back((static_cast<int64_t>(members.size()) + global - 1) / global);
  return counts;
}

std::vector<BucketSampler::GlobalBatch> BucketSampler::plan_epoch(int64_t epoch) const {
  const auto size = static_cast<int64_t>(bucket_of_.size());
  const std::vector<int64_t> order = epoch_order(size, shuffle_, seed_, epoch, shards_);
  std::vector<std::vector<int64_t>> in_order(buckets_.size());
  for (int64_t index : order) {
    if (bucket_of_[index] >= 0) in_order[bucket_of_[index]].push_back(index);
  }
  const int64_t global = batch_size_ * world_size_;
  std::vector<GlobalBatch> batches;
  for (std::size_t bucket = 0; bucket < in_order.size(); ++bucket) {
    const std::vector<int64_t>& samples = in_order[bucket];
    const auto count = static_cast<int64_t>(samples.size());
    for (int64_t start = 0; start < count; start += global) {
      GlobalBatch batch{static_cast<int>(bucket), {}};
      for (int64_t j = 0; j < global; ++j) batch.samples.push_back(samples[(start + j) % count]);
      batches.push_back(std::move(batch));
    }
  }
  if (shuffle_) {
    std::vector<int64_t> batch_order(batches.size());
    std::iota(batch_order.begin(), batch_order.end(), 0);
    seeded_shuffle(batch_order, mix_seed(seed_, static_cast<uint64_t>(epoch), kBatchOrderSalt));
    std::vector<GlobalBatch> shuffled;
    shuffled.reserve(batches.size());
    for (int64_t i : batch_order) shuffled.push_back(std::move(batches[i]));
    batches = std::move(shuffled);
  }
  return batches;
}

MicroBatchPlan BucketSampler::micro_batch(int64_t epoch, int64_t batch) const {
  TORCH_CHECK(batch >= 0 && batch < batches_per_epoch_, "BucketSampler: micro-batch ", batch, " of ",
              batches_per_epoch_);
  if (epoch != cached_epoch_) {
    cached_plan_ = plan_epoch(epoch);
    cached_epoch_ = epoch;
  }
  const GlobalBatch& global = cached_plan_[batch];
  const auto begin = global.samples.begin() + rank_ * batch_size_;
  const BucketResolution& bucket = buckets_[global.bucket];
  return {std::vector<int64_t>(begin, begin + batch_size_), bucket.width, bucket.height};
}

int64_t BucketSampler::spare_count(int64_t index) const {
  return static_cast<int64_t>(members_[bucket_of_[index]].size());
}

int64_t BucketSampler::spare(int64_t index, int64_t attempt) const {
  const std::vector<int64_t>& members = members_[bucket_of_[index]];
  return members[(position_[index] + attempt) % static_cast<int64_t>(members.size())];
}

}  // namespace sdtrain

#pragma once
/// Which dataset indices each rank takes in each micro-batch. Two samplers share one interface
/// (BatchSampler): DistributedSampler deals a seeded per-epoch shuffle of the whole dataset in
/// squares of data.transforms.resolution; BucketSampler (bucket_sampler.h) deals batches of one
/// aspect-ratio bucket each. Both shard a global batch of W x B samples so that rank r of W takes
/// its slice [r B, (r + 1) B): the union over ranks of one micro-batch step equals one batch of
/// W x B on a single rank, so results do not depend on how a global batch is spread, and every
/// rank gets the same number of micro-batches per epoch.
#include <cstdint>
#include <vector>

namespace sdtrain {

/// One micro-batch as a sampler deals it: the dataset indices and the size (pixels) its images
/// are brought to.
struct MicroBatchPlan {
  std::vector<int64_t> indices;
  int width = 0;
  int height = 0;
};

/// The data loader's view of a sampler. Implementations are deterministic functions of their
/// construction arguments and (epoch, batch), so every rank and every resume deals the same.
class BatchSampler {
 public:
  virtual ~BatchSampler() = default;
  /// Micro-batches per epoch on each rank (the same every epoch).
  virtual int64_t batches_per_epoch() const = 0;
  /// This rank's micro-batch `batch` (0-based) of `epoch`. Not thread-safe (caches the epoch).
  virtual MicroBatchPlan micro_batch(int64_t epoch, int64_t batch) const = 0;
  /// How many samples may stand in for a bad sample `index` (its own included), and the
  /// `attempt`-th of them (attempt 0 is `index` itself): a fixed sequence over the samples that
  /// fit the same micro-batch, so every run and every rank makes the same choice.
  virtual int64_t spare_count(int64_t index) const = 0;
  virtual int64_t spare(int64_t index, int64_t attempt) const = 0;
};

/// The epoch's permutation of [0, size): a Fisher-Yates shuffle driven by splitmix64(seed,
/// epoch), not std::shuffle, so it is the same on every platform.
std::vector<int64_t> seeded_permutation(int64_t size, uint64_t seed, int64_t epoch);

/// Shuffles `order` in place with a Fisher-Yates shuffle driven by splitmix64 from `state`.
void seeded_shuffle(std::vector<int64_t>& order, uint64_t state);

/// How a sharded dataset (Dataset::shard_ends: tar shards, Parquet row groups) is shuffled, so
/// that reading stays close to sequential: the shard order is shuffled, and the samples, read
/// shard after shard, pass through a shuffle buffer of `buffer` samples (WebDataset's
/// `shuffle(n)`): once it is full, each incoming sample takes the place of one drawn at random,
/// which is emitted; at the end the buffer is emitted in a shuffled order. Every sample comes out
/// exactly once, and a sample leaves at most `buffer` places before or (in distribution) not far
/// after its shard's turn, so a reader holds a few shards open at a time instead of all.
struct ShardShuffle {
  std::vector<int64_t> shard_ends;  ///< ascending; the last equals the dataset size. Empty: none
  int64_t buffer = 1000;            ///< data.shuffle_buffer; <= 1 keeps the samples in shard order
};

/// The order in which epoch `epoch` reads `shard_count` shards (a seeded permutation).
std::vector<int64_t> shard_order(int64_t shard_count, uint64_t seed, int64_t epoch);

/// The epoch's permutation of a sharded dataset as ShardShuffle describes, a function of (seed,
/// epoch) alone (splitmix64 streams, as seeded_permutation).
std::vector<int64_t> sharded_permutation(const ShardShuffle& shards, uint64_t seed, int64_t epoch);

/// The epoch's order of [0, size) for a sampler: identity without `shuffle`; else
/// sharded_permutation when `shards` has shards, seeded_permutation otherwise.
std::vector<int64_t> epoch_order(int64_t size, bool shuffle, uint64_t seed, int64_t epoch, const ShardShuffle& shards);

/// The square sampler: epoch e's seeded permutation dealt in global batches of W x B, rank r
/// taking batch b's slice [(b W + r) B, (b W + r + 1) B). The last incomplete global batch is
/// dropped.
class DistributedSampler final : public BatchSampler {
 public:
  /// Throws ConfigError when `dataset_size` is smaller than one global batch (W x B).
  DistributedSampler(int64_t dataset_size, int64_t batch_size, int rank, int world_size, bool shuffle,
                     uint64_t seed, int resolution = 0, ShardShuffle shards = {});

  int64_t batches_per_epoch() const override { return batches_per_epoch_; }
  /// batch_indices() at data.transforms.resolution `resolution` (constructor's).
  MicroBatchPlan micro_batch(int64_t epoch, int64_t batch) const override;
  /// Any sample: the samples after `index` in dataset order, cyclically.
  int64_t spare_count(int64_t) const override { return dataset_size_; }
  int64_t spare(int64_t index, int64_t attempt) const override { return (index + attempt) % dataset_size_; }

  /// The indices of this rank's micro-batch `batch` (0-based) of `epoch`. Not thread-safe (it
  /// caches the epoch's permutation).
  std::vector<int64_t> batch_indices(int64_t epoch, int64_t batch) const;

  /// The epoch's permutation: epoch_order(size, shuffle, seed, epoch, shards).
  std::vector<int64_t> permutation(int64_t epoch) const;

  int64_t dataset_size() const { return dataset_size_; }

 private:
  int64_t dataset_size_;
  int64_t batch_size_;
  int rank_;
  int world_size_;
  bool shuffle_;
  uint64_t seed_;
  int resolution_;
  ShardShuffle shards_;
  int64_t batches_per_epoch_;
  mutable int64_t cached_epoch_ = -1;
  mutable std::vector<int64_t> cached_permutation_;
};

/// splitmix64: a well-mixed 64-bit hash, used to derive independent seeds from (seed, a, b).
uint64_t mix_seed(uint64_t seed, uint64_t a, uint64_t b = 0);

/// A uniform double in [0, 1) from the splitmix64 stream started at `seed` (its first draw's top
/// 53 bits). Unlike std::uniform_real_distribution, whose algorithm each standard library chooses,
/// the value is the same on every platform, so seeded decisions (caption dropout) reproduce
/// everywhere.
double uniform_from_seed(uint64_t seed);

}  // namespace sdtrain

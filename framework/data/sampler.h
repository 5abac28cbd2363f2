#pragma once
/// Which dataset indices each rank takes in each micro-batch: a seeded per-epoch shuffle, sharded
/// so that rank r of W takes batch b's slice [(b W + r) B, (b W + r + 1) B) of the permutation.
/// The union over ranks of one micro-batch step equals one batch of W x B on a single rank, so
/// results do not depend on how a global batch is spread. Every rank gets the same number of
/// micro-batches per epoch (the last incomplete global batch is dropped).
#include <cstdint>
#include <vector>

namespace sdtrain {

class DistributedSampler {
 public:
  /// Throws ConfigError when `dataset_size` is smaller than one global batch (W x B).
  DistributedSampler(int64_t dataset_size, int64_t batch_size, int rank, int world_size, bool shuffle,
                     uint64_t seed);

  /// Micro-batches per epoch on each rank.
  int64_t batches_per_epoch() const { return batches_per_epoch_; }

  /// The indices of this rank's micro-batch `batch` (0-based) of `epoch`. Not thread-safe (it
  /// caches the epoch's permutation).
  std::vector<int64_t> batch_indices(int64_t epoch, int64_t batch) const;

  /// The epoch's permutation (identity when not shuffling). Deterministic across platforms: a
  /// Fisher-Yates shuffle driven by splitmix64(seed, epoch), not std::shuffle.
  std::vector<int64_t> permutation(int64_t epoch) const;

  int64_t dataset_size() const { return dataset_size_; }

 private:
  int64_t dataset_size_;
  int64_t batch_size_;
  int rank_;
  int world_size_;
  bool shuffle_;
  uint64_t seed_;
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

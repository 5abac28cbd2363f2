#pragma once
/// The bucket plan of a training set (data.buckets): every sample's image size read from its
/// header, the bucket each goes to, and the bucket report printed before training (and by
/// `sdtrain --dry-run-data`).
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "framework/data/buckets.h"
#include "framework/data/sample_scan.h"
#include "sdtrain/dataset.h"

namespace sdtrain {

/// A sample whose size could not be read: its key (or "#<index>") and why.
struct UnreadableSample {
  int64_t index = 0;
  std::string key;
  std::string message;
};

/// One bucket in use, for the report.
struct BucketUsage {
  BucketResolution bucket;
  int64_t images = 0;
  int64_t upscaled = 0;    ///< resized larger than the original
  int64_t downscaled = 0;  ///< resized smaller than the original (the rest keep their size)
};

struct BucketPlan {
  /// The buckets that hold at least one sample, sorted; bucket_of indexes into it.
  std::vector<BucketResolution> buckets;
  /// Per sample: its bucket, or -1 when it is not trained (dropped or unreadable).
  std::vector<int> bucket_of;
  std::vector<BucketUsage> usage;  ///< parallel to `buckets`
  int64_t dropped = 0;             ///< no_upscale: a bucket side would fall below min_side
  int64_t unreadable_count = 0;    ///< over all ranks
  std::vector<UnreadableSample> unreadable;  ///< those this rank read
};

/// Sums a tensor over the ranks in place (Communicator::allreduce_sum), or null on one process.
using SumOverRanks = std::function<void(torch::Tensor&)>;

/// Reads the image size of every sample of `dataset` and assigns buckets with `table`. The
/// reading is split: this rank (of `world_size`) reads the samples i with i mod world_size ==
/// rank on `threads` threads (0: the calling thread), and `sum_over_ranks` combines what the
/// ranks read (it must be given when world_size > 1). An image above `max_pixels` counts as
/// unreadable. `unreadable` lists only the samples this rank read; the counts cover all.
BucketPlan plan_buckets(const Dataset& dataset, const BucketTable& table, int64_t max_pixels, int threads, int rank,
                        int world_size, const SumOverRanks& sum_over_ranks);

/// The same from scans already made (scan_samples with this rank's share of `world_size`).
BucketPlan plan_buckets(const std::vector<SampleScan>& scans, const BucketTable& table, int world_size = 1,
                        const SumOverRanks& sum_over_ranks = nullptr);

/// A SHA-256 over the plan's buckets and each sample's bucket: equal digests deal equal epochs
/// (with equal seed and global batch). Kept in checkpoints to notice a changed dataset.
std::string bucket_plan_digest(const BucketPlan& plan);

/// The report as text lines: per bucket its resolution, images, upscaled, downscaled, global
/// batches of `global_batch` per epoch and the padding samples they repeat, flagged when it holds
/// fewer images than one global batch; then the dropped and unreadable counts.
std::string format_bucket_report(const BucketPlan& plan, int64_t global_batch);

/// The report as CSV with a header row: width,height,aspect,images,upscaled,downscaled,
/// global_batches,padding,below_global_batch; then a row per bucket.
std::string bucket_report_csv(const BucketPlan& plan, int64_t global_batch);

}  // namespace sdtrain

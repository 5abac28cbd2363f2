#include "framework/data/bucket_plan.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>

#include "framework/util/file_util.h"
#include "sdtrain/errors.h"

namespace sdtrain {

BucketPlan plan_buckets(const Dataset& dataset, const BucketTable& table, int64_t max_pixels, int threads, int rank,
                        int world_size, const SumOverRanks& sum_over_ranks) {
  ScanOptions scan;
  scan.threads = threads;
  scan.rank = rank;
  scan.world_size = world_size;
  scan.max_pixels = max_pixels;
  return plan_buckets(scan_samples(dataset, scan), table, world_size, sum_over_ranks);
}

BucketPlan plan_buckets(const std::vector<SampleScan>& scans, const BucketTable& table, int world_size,
                        const SumOverRanks& sum_over_ranks) {
  const auto size = static_cast<int64_t>(scans.size());
  // This rank's share: width and height, -1 and -1 when unreadable, 0 for the others' samples.
  torch::Tensor sizes = torch::zeros({size, 2}, torch::kInt64);
  auto* mine = sizes.data_ptr<int64_t>();
  BucketPlan plan;
  for (int64_t i = 0; i < size; ++i) {
    const SampleScan& sample = scans[i];
    if (!sample.scanned) continue;
    if (!sample.error.empty()) plan.unreadable.push_back({i, sample.key, sample.error});
    mine[2 * i] = sample.error.empty() ? sample.width : -1;
    mine[2 * i + 1] = sample.error.empty() ? sample.height : -1;
  }
  if (world_size > 1) {
    TORCH_CHECK(sum_over_ranks, "plan_buckets: world size ", world_size, " needs sum_over_ranks");
    sum_over_ranks(sizes);
  }
  const auto* read = sizes.data_ptr<int64_t>();
  std::vector<BucketAssignment> assignments(size);
  std::map<BucketResolution, BucketUsage> usage;
  for (int64_t i = 0; i < size; ++i) {
    if (read[2 * i] <= 0) {
      ++plan.unreadable_count;
      continue;
    }
    const int width = static_cast<int>(read[2 * i]);
    const int height = static_cast<int>(read[2 * i + 1]);
    assignments[i] = table.assign(width, height);
    if (assignments[i].dropped) {
      ++plan.dropped;
      continue;
    }
    BucketUsage& used = usage[assignments[i].bucket];
    used.bucket = assignments[i].bucket;
    ++used.images;
    // The covering resize keeps the aspect ratio (up to rounding): the area tells up or down.
    const int64_t resized_area = static_cast<int64_t>(assignments[i].resized_width) * assignments[i].resized_height;
    const int64_t area = static_cast<int64_t>(width) * height;
    if (resized_area > area) ++used.upscaled;
    if (resized_area < area) ++used.downscaled;
  }
  std::map<BucketResolution, int> index_of;
  for (const auto& [bucket, used] : usage) {
    index_of[bucket] = static_cast<int>(plan.buckets.size());
    plan.buckets.push_back(bucket);
    plan.usage.push_back(used);
  }
  plan.bucket_of.assign(size, -1);
  for (int64_t i = 0; i < size; ++i) {
    if (read[2 * i] > 0 && !assignments[i].dropped) plan.bucket_of[i] = index_of.at(assignments[i].bucket);
  }
  return plan;
}

std::string bucket_plan_digest(const BucketPlan& plan) {
  std::string bytes;
  for (const BucketResolution& bucket : plan.buckets) {
    bytes += std::to_string(bucket.width) + "x" + std::to_string(bucket.height) + ";";
  }
  bytes += "|";
  for (int bucket : plan.bucket_of) bytes += std::to_string(bucket) + ",";
  return sha256_hex(bytes);
}

namespace {
int64_t global_batches(const BucketUsage& used, int64_t global_batch) {
  return (used.images + global_batch - 1) / global_batch;
}
}  // namespace

std::string format_bucket_report(const BucketPlan& plan, int64_t global_batch) {
  std::ostringstream out;
  int64_t trained = 0;
  int64_t batches = 0;
  for (const BucketUsage& used : plan.usage) {
    trained += used.images;
    batches += global_batches(used, global_batch);
  }
  out << "buckets: " << plan.buckets.size() << " in use, " << trained << " images in " << batches
      << " global batches of " << global_batch << " per epoch\n";
  out << "  bucket      aspect  images  upscaled  downscaled  batches  padding\n";
  for (const BucketUsage& used : plan.usage) {
    const int64_t count = global_batches(used, global_batch);
    char line[160];
    std::snprintf(line, sizeof line, "  %4dx%-4d  %6.3f  %6lld  %8lld  %10lld  %7lld  %7lld%s\n", used.bucket.width,
                  used.bucket.height, static_cast<double>(used.bucket.width) / used.bucket.height,
                  static_cast<long long>(used.images), static_cast<long long>(used.upscaled),
                  static_cast<long long>(used.downscaled), static_cast<long long>(count),
                  static_cast<long long>(count * global_batch - used.images),
                  used.images < global_batch ? "  (fewer images than a global batch: repeated to fill it)" : "");
    out << line;
  }
  out << "  dropped (no_upscale, a side below min_side): " << plan.dropped << "\n";
  out << "  unreadable (skipped as bad samples): " << plan.unreadable_count << "\n";
  return out.str();
}

std::string bucket_report_csv(const BucketPlan& plan, int64_t global_batch) {
  std::ostringstream out;
  out << "width,height,aspect,images,upscaled,downscaled,global_batches,padding,below_global_batch\n";
  for (const BucketUsage& used : plan.usage) {
    const int64_t count = global_batches(used, global_batch);
    char aspect[32];
    std::snprintf(aspect, sizeof aspect, "%.6f", static_cast<double>(used.bucket.width) / used.bucket.height);
    out << used.bucket.width << ',' << used.bucket.height << ',' << aspect << ',' << used.images << ','
        << used.upscaled << ',' << used.downscaled << ',' << count << ',' << count * global_batch - used.images << ','
        << (used.images < global_batch ? 1 : 0) << '\n';
  }
  return out.str();
}

}  // namespace sdtrain

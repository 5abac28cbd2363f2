#pragma once
/// Aspect-ratio buckets (data.buckets): the bucket resolutions and which bucket an image of a
/// given size goes to, by kohya's sd-scripts rules (library/model_util.py make_bucket_resolutions
/// and library/train_util.py BucketManager.select_bucket, "legacy" selection), so that a dataset
/// bucketed here lands in the buckets it would land in there.
#include <cstdint>
#include <vector>

#include "proto/sdtrain.pb.h"

namespace sdtrain {

/// A bucket's size in pixels. Ordered as kohya sorts its (width, height) tuples.
struct BucketResolution {
  int width = 0;
  int height = 0;
  auto operator<=>(const BucketResolution&) const = default;
};

/// kohya's make_bucket_resolutions: the square of side floor(sqrt(max_area) / step) x step, and
/// for every width w = min_side, min_side + step, ... <= max_side the pair h = min(max_side,
/// floor(floor(max_area / w) / step) x step) when h >= min_side, as (w, h) and (h, w). Sorted,
/// without duplicates.
std::vector<BucketResolution> make_bucket_resolutions(int64_t max_area, int min_side, int max_side, int step);

/// Where one image goes: its bucket and the size it is resized to before the crop (covering the
/// bucket: resized_width >= bucket.width and resized_height >= bucket.height).
struct BucketAssignment {
  BucketResolution bucket;
  int resized_width = 0;
  int resized_height = 0;
  /// True with no_upscale when a bucket side would be below min_side: the image is not trained.
  bool dropped = false;
};

/// The bucket rules of one BucketConfig.
class BucketTable {
 public:
  /// Validates `config` (ConfigError naming the data.buckets field and what was expected);
  /// max_area 0 means `resolution` squared (data.transforms.resolution).
  BucketTable(const BucketConfig& config, int resolution);

  /// The bucket for a width x height image (both positive; std::invalid_argument otherwise).
  /// Without no_upscale: the predefined bucket of the image's own size if there is one, else the
  /// first (in sorted order) of nearest aspect ratio; scaled so that the side that fits matches
  /// it exactly, each side rounded half up (int(x + 0.5)). With no_upscale: the image shrunk to
  /// max_area when larger (keeping its aspect ratio, one side rounded to `step`, the choice with
  /// the nearer aspect ratio), the bucket that size rounded down to multiples of `step`.
  BucketAssignment assign(int width, int height) const;

  /// The predefined buckets (without no_upscale every image lands in one of them).
  const std::vector<BucketResolution>& predefined() const { return predefined_; }
  int64_t max_area() const { return max_area_; }
  int step() const { return step_; }
  int min_side() const { return min_side_; }
  bool no_upscale() const { return no_upscale_; }

 private:
  int round_to_step(double x) const;

  int64_t max_area_;
  int min_side_;
  int max_side_;
  int step_;
  bool no_upscale_;
  std::vector<BucketResolution> predefined_;
  std::vector<double> predefined_aspects_;
};

}  // namespace sdtrain

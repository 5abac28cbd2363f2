#pragma once
/// The training image transforms of TransformConfig (proto/sdtrain.proto), equal to the recipe's
/// torchvision pipeline on PIL images:
///   Resize(resolution, interpolation)  -> short side = resolution, long side =
///                                         int(resolution * long / short) (torchvision's rule)
///   RandomCrop / CenterCrop(resolution) -> center offsets int(round((size - resolution) / 2.0))
///                                         with Python's round-half-to-even
///   RandomHorizontalFlip(p = 0.5)
///   ToTensor() then x * 2 - 1          -> float32 in [-1, 1], channels first
/// Resampling is PIL-exact (image_resize.h). Randomness comes only from `seed`, so a sample's
/// augmentation is reproducible from (run seed, epoch, index) whatever thread or rank runs it.
#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "framework/data/buckets.h"
#include "framework/data/image_resize.h"
#include "proto/sdtrain.pb.h"
#include "sdtrain/image.h"

namespace sdtrain {

/// The geometry apply_transforms() uses for one image: resize target, crop window and flip.
struct TransformPlan {
  int resized_width = 0;
  int resized_height = 0;
  /// Top-left corner of the crop in the resized image (before the flip).
  int crop_x = 0;
  int crop_y = 0;
  /// The crop's size: resolution x resolution, or the bucket's with data.buckets.
  int crop_width = 0;
  int crop_height = 0;
  bool flip = false;
  /// Planned for an aspect-ratio bucket (plan_bucket_transforms), not for the square.
  bool bucketed = false;
};

/// torchvision's Resize(int) output size for a width x height image: (width, height) of the
/// result. Throws std::invalid_argument for non-positive sizes.
std::pair<int, int> resized_size_for_short_side(int width, int height, int short_side);

/// Plans the transforms of `config` for a width x height image with randomness from `seed`
/// (crop offsets uniform over all valid positions, flip with probability 1/2). Throws
/// std::invalid_argument for a non-positive config.resolution().
TransformPlan plan_transforms(int width, int height, const TransformConfig& config, std::uint64_t seed);

/// Plans the transforms for an image assigned to a bucket (data.buckets): resized to
/// assignment.resized_width x resized_height, cropped to the bucket as config.crop() says (CENTER:
/// torchvision's centre offsets; RANDOM: uniform over all windows, drawn as plan_transforms
/// draws), flipped as config.random_flip() says. config.resolution() plays no part.
TransformPlan plan_bucket_transforms(const BucketAssignment& assignment, const TransformConfig& config,
                                     std::uint64_t seed);

/// A complete, canonical description of `plan` under `config` (resolution or bucket,
/// interpolation, antialias, resized size, crop window, flip): equal descriptions give equal pixels from equal
/// images. Used in cache keys (PixelsOrigin::transform).
std::string describe_plan(const TransformPlan& plan, const TransformConfig& config);

/// True when `plan` leaves no choice to randomness except the flip: crop CENTER, or a crop
/// window that covers the whole resized image. Then the same pixels recur whenever the same flip
/// is drawn, which is what makes per-flip caching of latents worthwhile.
bool plan_fixed_given_flip(const TransformPlan& plan, const TransformConfig& config);

/// Resize + crop + flip of `plan` applied to an RGB image (std::invalid_argument otherwise),
/// pixels scaled to [-1, 1] (v / 255 * 2 - 1): what apply_transforms returns when it draws `plan`. The data loader plans from the file header
/// first (to look up caches) and finishes with this.
torch::Tensor apply_plan_to_tensor(const Image& image, const TransformPlan& plan, const TransformConfig& config);

/// apply_plan_to_tensor() written into `out`, a contiguous float32 CPU tensor [3, H, W]
/// (plan.crop_height, plan.crop_width; std::invalid_argument otherwise): lets the data loader fill the rows of
/// a batch in place.
void apply_plan_into(const Image& image, const TransformPlan& plan, const TransformConfig& config,
                     const torch::Tensor& out);

/// The training transforms of `config` applied to an RGB image. Returns a contiguous float32
/// CPU tensor [3, R, R] in [-1, 1], R = config.resolution(). Throws std::invalid_argument for an
/// image that is not 3-channel or a resolution <= 0.
torch::Tensor apply_transforms(const Image& image, const TransformConfig& config, std::uint64_t seed);

/// The resample filter for a TransformConfig interpolation.
ResampleFilter resample_filter(TransformConfig::Interpolation interpolation);

}  // namespace sdtrain

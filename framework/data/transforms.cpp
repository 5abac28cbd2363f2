#include "framework/data/transforms.h"

#include <cmath>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

#include "framework/data/pixel_scaling.h"

namespace sdtrain {
namespace {

/// SplitMix64: a tiny, portable generator (std distributions differ between standard libraries).
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, bound) (bound >= 1), without modulo bias (Lemire's method).
  std::uint64_t below(std::uint64_t bound) {
    const std::uint64_t threshold = (0 - bound) % bound;
    for (;;) {
      const unsigned __int128 product = static_cast<unsigned __int128>(next()) * bound;
      if (static_cast<std::uint64_t>(product) >= threshold) return static_cast<std::uint64_t>(product >> 64);
    }
  }

 private:
  std::uint64_t state_;
};

/// torchvision's CenterCrop offset: int(round((size - crop) / 2.0)), round half to even.
int center_offset(int size, int crop) {
  return static_cast<int>(std::nearbyint((size - crop) / 2.0));
}

}  // namespace

ResampleFilter resample_filter(TransformConfig::Interpolation interpolation) {
  switch (interpolation) {
    case TransformConfig::NEAREST: return ResampleFilter::NEAREST;
    case TransformConfig::BILINEAR: return ResampleFilter::BILINEAR;
    case TransformConfig::BICUBIC: return ResampleFilter::BICUBIC;
    case TransformConfig::LANCZOS: return ResampleFilter::LANCZOS;
  }
  throw std::invalid_argument("transforms: unknown interpolation " + std::to_string(interpolation));
}

std::pair<int, int> resized_size_for_short_side(int width, int height, int short_side) {
  if (width <= 0 || height <= 0 || short_side <= 0) {
    throw std::invalid_argument("transforms: cannot resize a " + std::to_string(width) + "x" +
                                std::to_string(height) + " image to short side " + std::to_string(short_side));
  }
  const bool portrait = width <= height;
  const int short_in = portrait ? width : height;
  const int long_in = portrait ? height : width;
  // Python: int(size * long / short), a true division of two integers, then truncation.
  const int long_out = static_cast<int>(static_cast<double>(static_cast<std::int64_t>(short_side) * long_in) /
                                        static_cast<double>(short_in));
  return portrait ? std::make_pair(short_side, long_out) : std::make_pair(long_out, short_side);
}

namespace {

/// The crop window (drawn as torchvision's RandomCrop draws it, row first) and the flip.
TransformPlan plan_crop(int resized_width, int resized_height, int crop_width, int crop_height,
                        const TransformConfig& config, std::uint64_t seed) {
  TransformPlan plan;
  plan.resized_width = resized_width;
  plan.resized_height = resized_height;
  plan.crop_width = crop_width;
  plan.crop_height = crop_height;
  SplitMix64 rng(seed);
  if (config.crop() == TransformConfig::CENTER) {
    plan.crop_x = center_offset(resized_width, crop_width);
    plan.crop_y = center_offset(resized_height, crop_height);
  } else {
    plan.crop_y = static_cast<int>(rng.below(static_cast<std::uint64_t>(resized_height - crop_height) + 1));
    plan.crop_x = static_cast<int>(rng.below(static_cast<std::uint64_t>(resized_width - crop_width) + 1));
  }
  plan.flip = config.random_flip() && (rng.next() >> 63) != 0;
  return plan;
}

}  // namespace

TransformPlan plan_transforms(int width, int height, const TransformConfig& config, std::uint64_t seed) {
  const int resolution = config.resolution();
  if (resolution <= 0) {
    throw std::invalid_argument("apply_transforms: resolution must be positive, got " + std::to_string(resolution));
  }
  const auto [resized_width, resized_height] = resized_size_for_short_side(width, height, resolution);
  return plan_crop(resized_width, resized_height, resolution, resolution, config, seed);
}

TransformPlan plan_bucket_transforms(const BucketAssignment& assignment, const TransformConfig& config,
                                     std::uint64_t seed) {
  const BucketResolution& bucket = assignment.bucket;
  if (bucket.width <= 0 || bucket.height <= 0 || assignment.resized_width < bucket.width ||
      assignment.resized_height < bucket.height) {
    throw std::invalid_argument("plan_bucket_transforms: a " + std::to_string(assignment.resized_width) + "x" +
                                std::to_string(assignment.resized_height) + " resize does not cover bucket " +
                                std::to_string(bucket.width) + "x" + std::to_string(bucket.height));
  }
  TransformPlan plan =
      plan_crop(assignment.resized_width, assignment.resized_height, bucket.width, bucket.height, config, seed);
  plan.bucketed = true;
  return plan;
}

std::string describe_plan(const TransformPlan& plan, const TransformConfig& config) {
  // Square plans keep the description they always had, so existing caches stay valid.
  const std::string target = plan.bucketed ? "bucket=" + std::to_string(plan.crop_width) + "x" +
                                                 std::to_string(plan.crop_height)
                                           : "resolution=" + std::to_string(config.resolution());
  const std::string crop_size = plan.bucketed ? std::to_string(plan.crop_width) + "x" + std::to_string(plan.crop_height)
                                              : std::to_string(plan.crop_width);
  return target + " resize=" + std::to_string(plan.resized_width) + "x" + std::to_string(plan.resized_height) + " " +
         TransformConfig::Interpolation_Name(config.interpolation()) +
         " antialias=" + std::to_string(config.antialias() ? 1 : 0) + " crop=" + std::to_string(plan.crop_x) + "," +
         std::to_string(plan.crop_y) + "+" + crop_size + " flip=" + std::to_string(plan.flip ? 1 : 0);
}

bool plan_fixed_given_flip(const TransformPlan& plan, const TransformConfig& config) {
  return config.crop() == TransformConfig::CENTER ||
         (plan.resized_width == plan.crop_width && plan.resized_height == plan.crop_height);
}

void apply_plan_into(const Image& image, const TransformPlan& plan, const TransformConfig& config,
                     const torch::Tensor& out) {
  if (image.channels != 3) {
    throw std::invalid_argument("apply_transforms: expected an RGB image, got " + std::to_string(image.channels) +
                                " channels");
  }
  const int width = plan.crop_width;
  const int height = plan.crop_height;
  if (!out.defined() || out.device() != torch::kCPU || out.scalar_type() != torch::kFloat32 ||
      !out.is_contiguous() || out.sizes() != torch::IntArrayRef({3, height, width})) {
    throw std::invalid_argument("apply_plan_into: expected a contiguous float32 CPU tensor [3, " +
                                std::to_string(height) + ", " + std::to_string(width) + "]");
  }
  // Resize, crop, flip and the split into channel planes in one go, then one vectorised pass to
  // float (tests check it against the unfused 8-bit path).
  const std::size_t count = static_cast<std::size_t>(3) * width * height;
  std::unique_ptr<std::uint8_t[]> planes(new std::uint8_t[count]);
  resize_window_planar(image, plan.resized_width, plan.resized_height, resample_filter(config.interpolation()),
                       config.antialias(), {plan.crop_x, plan.crop_y, width, height}, plan.flip, planes.get());
  bytes_to_signed_unit(planes.get(), count, out.data_ptr<float>());
}

torch::Tensor apply_plan_to_tensor(const Image& image, const TransformPlan& plan, const TransformConfig& config) {
  torch::Tensor out = torch::empty({3, plan.crop_height, plan.crop_width}, torch::kFloat32);
  apply_plan_into(image, plan, config, out);
  return out;
}

torch::Tensor apply_transforms(const Image& image, const TransformConfig& config, std::uint64_t seed) {
  return apply_plan_to_tensor(image, plan_transforms(image.width, image.height, config, seed), config);
}

}  // namespace sdtrain

#include "framework/data/buckets.h"

#include <cmath>
#include <limits>
#include <set>
#include <stdexcept>
#include <string>

#include "sdtrain/errors.h"

namespace sdtrain {

std::vector<BucketResolution> make_bucket_resolutions(int64_t max_area, int min_side, int max_side, int step) {
  std::set<BucketResolution> resolutions;
  // Python: int(math.sqrt(max_area) // divisible) * divisible, a floor division of floats.
  const int square = static_cast<int>(std::floor(std::sqrt(static_cast<double>(max_area)) / step)) * step;
  resolutions.insert({square, square});
  for (int width = min_side; width <= max_side; width += step) {
    const int height = static_cast<int>(std::min<int64_t>(max_side, (max_area / width) / step * step));
    if (height >= min_side) {
      resolutions.insert({width, height});
      resolutions.insert({height, width});
    }
  }
  return {resolutions.begin(), resolutions.end()};
}

BucketTable::BucketTable(const BucketConfig& config, int resolution)
    : max_area_(config.max_area() > 0 ? config.max_area() : static_cast<int64_t>(resolution) * resolution),
      min_side_(config.min_side()),
      max_side_(config.max_side()),
      step_(config.step()),
      no_upscale_(config.no_upscale()) {
  if (step_ <= 0 || step_ % 64 != 0) {
    throw ConfigError("data.buckets.step: must be a positive multiple of 64 (the SD UNet needs latents divisible by 8), "
                      "got " + std::to_string(step_));
  }
  if (min_side_ <= 0 || min_side_ % step_ != 0) {
    throw ConfigError("data.buckets.min_side: must be a positive multiple of data.buckets.step " +
                      std::to_string(step_) + ", got " + std::to_string(min_side_));
  }
  if (max_side_ < min_side_ || max_side_ % step_ != 0) {
    throw ConfigError("data.buckets.max_side: must be a multiple of data.buckets.step " + std::to_string(step_) +
                      " and at least data.buckets.min_side " + std::to_string(min_side_) + ", got " +
                      std::to_string(max_side_));
  }
  if (max_area_ <= 0) {
    throw ConfigError("data.buckets.max_area: must be positive (0 means data.transforms.resolution squared), got " +
                      std::to_string(max_area_));
  }
  // As kohya asserts: the square bucket must not exceed max_side.
  const auto square_side = static_cast<int64_t>(std::sqrt(static_cast<double>(max_area_)));
  if (square_side > max_side_) {
    throw ConfigError("data.buckets.max_side: " + std::to_string(max_side_) + " is below the side " +
                      std::to_string(square_side) + " of the square of max_area " + std::to_string(max_area_));
  }
  predefined_ = make_bucket_resolutions(max_area_, min_side_, max_side_, step_);
  for (const BucketResolution& bucket : predefined_) {
    predefined_aspects_.push_back(static_cast<double>(bucket.width) / bucket.height);
  }
}

int BucketTable::round_to_step(double x) const {
  const int rounded = static_cast<int>(x + 0.5);
  return rounded - rounded % step_;
}

BucketAssignment BucketTable::assign(int width, int height) const {
  if (width <= 0 || height <= 0) {
    throw std::invalid_argument("buckets: cannot assign a " + std::to_string(width) + "x" + std::to_string(height) +
                                " image");
  }
  const double aspect = static_cast<double>(width) / height;
  BucketAssignment out;
  if (!no_upscale_) {
    const BucketResolution own{width, height};
    std::size_t chosen = 0;
    bool found = false;
    for (std::size_t i = 0; i < predefined_.size(); ++i) {
      if (predefined_[i] == own) {
        chosen = i;
        found = true;
        break;
      }
    }
    if (!found) {
      // numpy's argmin: the first of the smallest errors.
      double best = std::numeric_limits<double>::infinity();
      for (std::size_t i = 0; i < predefined_.size(); ++i) {
        const double error = std::abs(predefined_aspects_[i] - aspect);
        if (error < best) {
          best = error;
          chosen = i;
        }
      }
    }
    out.bucket = predefined_[chosen];
    const double bucket_aspect = static_cast<double>(out.bucket.width) / out.bucket.height;
    const double scale = aspect > bucket_aspect ? static_cast<double>(out.bucket.height) / height
                                                : static_cast<double>(out.bucket.width) / width;
    out.resized_width = static_cast<int>(width * scale + 0.5);
    out.resized_height = static_cast<int>(height * scale + 0.5);
  } else {
    out.resized_width = width;
    out.resized_height = height;
    if (static_cast<int64_t>(width) * height > max_area_) {
      const double resized_width = std::sqrt(static_cast<double>(max_area_) * aspect);
      const double resized_height = static_cast<double>(max_area_) / resized_width;
      // Round one side to the step and derive the other; keep the choice of nearer aspect ratio.
      const int width_rounded = round_to_step(resized_width);
      const int height_for_width = round_to_step(width_rounded / aspect);
      const int height_rounded = round_to_step(resized_height);
      const int width_for_height = round_to_step(height_rounded * aspect);
      const double inf = std::numeric_limits<double>::infinity();
      const double aspect_by_width = height_for_width > 0 ? static_cast<double>(width_rounded) / height_for_width : inf;
      const double aspect_by_height = height_rounded > 0 ? static_cast<double>(width_for_height) / height_rounded : inf;
      if (std::abs(aspect_by_width - aspect) < std::abs(aspect_by_height - aspect)) {
        out.resized_width = width_rounded;
        out.resized_height = static_cast<int>(width_rounded / aspect + 0.5);
      } else {
        out.resized_width = static_cast<int>(height_rounded * aspect + 0.5);
        out.resized_height = height_rounded;
      }
    }
    out.bucket = {out.resized_width - out.resized_width % step_, out.resized_height - out.resized_height % step_};
    out.dropped = out.bucket.width < min_side_ || out.bucket.height < min_side_;
  }
  // Floating-point rounding must never leave the resized image smaller than its crop.
  out.resized_width = std::max(out.resized_width, out.bucket.width);
  out.resized_height = std::max(out.resized_height, out.bucket.height);
  return out;
}

}  // namespace sdtrain

// The training transforms against PIL (Image.resize) with torchvision's Resize/CenterCrop rules.
#include <array>
#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <utility>

#include <gtest/gtest.h>

#include "framework/data/image_codec.h"
#include "framework/data/transforms.h"
#include "tests/data/test_support.h"

namespace sdtrain {
namespace {

using testing::fixture_dir;
using testing::fixture_manifest;

// The unfused 8-bit path the fused transforms (apply_plan_into) must equal: resize + crop +
// flip as 8-bit pixels, then the scaling to [-1, 1] float.

// Resize + crop + flip of `plan` applied to `image` (8-bit, 1-4 channels), as 8-bit pixels.
Image apply_plan(const Image& image, const TransformPlan& plan, const TransformConfig& config) {
  Image out = resize_window(image, plan.resized_width, plan.resized_height, resample_filter(config.interpolation()),
                            config.antialias(), {plan.crop_x, plan.crop_y, plan.crop_width, plan.crop_height});
  if (plan.flip) {
    const int C = out.channels;
    for (int y = 0; y < out.height; ++y) {
      std::uint8_t* row = out.pixels.data() + static_cast<std::size_t>(y) * out.width * C;
      for (int a = 0, b = out.width - 1; a < b; ++a, --b) {
        for (int c = 0; c < C; ++c) std::swap(row[a * C + c], row[b * C + c]);
      }
    }
  }
  return out;
}

// 8-bit interleaved image -> float32 [channels, height, width] with v / 255 * 2 - 1.
torch::Tensor image_to_tensor(const Image& image) {
  TORCH_CHECK(image.channels >= 1 && image.pixels.size() ==
                  static_cast<std::size_t>(image.width) * image.height * image.channels,
              "image_to_tensor: inconsistent image");
  static const auto lut = [] {
    std::array<float, 256> table{};
    // torchvision ToTensor (x / 255 in float32) followed by the recipe's x * 2 - 1.
    for (int v = 0; v < 256; ++v) table[v] = static_cast<float>(v) / 255.0f * 2.0f - 1.0f;
    return table;
  }();
  const int C = image.channels;
  const std::int64_t plane = static_cast<std::int64_t>(image.width) * image.height;
  torch::Tensor out = torch::empty({C, image.height, image.width}, torch::kFloat32);
  float* dst = out.data_ptr<float>();
  const std::uint8_t* src = image.pixels.data();
  for (std::int64_t i = 0; i < plane; ++i) {
    for (int c = 0; c < C; ++c) dst[c * plane + i] = lut[src[i * C + c]];
  }
  return out;
}

// PIL's Image.resize(size, resample) (antialias = true; see image_resize.h for false).
Image resize_image(const Image& image, int width, int height, TransformConfig::Interpolation interpolation,
                   bool antialias) {
  return resize_window(image, width, height, resample_filter(interpolation), antialias);
}

TransformConfig::Interpolation interpolation_named(const std::string& name) {
  TransformConfig::Interpolation value = TransformConfig::BICUBIC;
  EXPECT_TRUE(TransformConfig::Interpolation_Parse(name, &value)) << name;
  return value;
}

Image crop(const Image& image, int left, int top, int size) {
  Image out;
  out.width = out.height = size;
  out.channels = image.channels;
  for (int y = top; y < top + size; ++y) {
    const auto* row = image.pixels.data() + (static_cast<std::size_t>(y) * image.width + left) * image.channels;
    out.pixels.insert(out.pixels.end(), row, row + size * image.channels);
  }
  return out;
}

struct ErrorStats {
  double mean = 0;
  int max = 0;
};

ErrorStats compare(const Image& a, const Image& b) {
  EXPECT_EQ(a.width, b.width);
  EXPECT_EQ(a.height, b.height);
  ErrorStats stats;
  if (a.pixels.size() != b.pixels.size()) {
    stats.max = 255;
    return stats;
  }
  long long total = 0;
  for (std::size_t i = 0; i < a.pixels.size(); ++i) {
    const int d = std::abs(int(a.pixels[i]) - int(b.pixels[i]));
    total += d;
    stats.max = std::max(stats.max, d);
  }
  stats.mean = double(total) / a.pixels.size();
  return stats;
}

TEST(Transforms, ResizeMatchesPilExactly) {
  const auto manifest = fixture_manifest();
  ASSERT_GE(manifest["transforms"].size(), 30u);
  for (const auto& entry : manifest["transforms"]) {
    const std::string name = std::string(entry["interpolation"]) + " " + std::to_string(int(entry["width"])) + "x" +
                             std::to_string(int(entry["height"])) + " -> " +
                             std::to_string(int(entry["resized_width"])) + "x" +
                             std::to_string(int(entry["resized_height"]));
    SCOPED_TRACE(name);
    const Image source = read_image_file((fixture_dir() / std::string(entry["source"])).string(), 0);
    const Image expected = testing::read_raw_rgb((fixture_dir() / std::string(entry["resized"])).string(),
                                                 entry["resized_width"], entry["resized_height"]);
    const Image resized = resize_image(source, entry["resized_width"], entry["resized_height"],
                                       interpolation_named(entry["interpolation"]), true);
    const ErrorStats stats = compare(resized, expected);
    // The fixed-point arithmetic is PIL's, so the result is bit-exact (the brief's bound is a
    // mean abs error of 1/255).
    EXPECT_EQ(stats.max, 0) << "mean abs error " << stats.mean;
    EXPECT_LE(stats.mean, 1.0);
  }
}

TEST(Transforms, CenterCropPipelineMatchesTorchvision) {
  const auto manifest = fixture_manifest();
  for (const auto& entry : manifest["transforms"]) {
    SCOPED_TRACE(std::string(entry["resized"]));
    TransformConfig config;
    config.set_resolution(entry["resolution"]);
    config.set_interpolation(interpolation_named(entry["interpolation"]));
    config.set_crop(TransformConfig::CENTER);
    config.set_random_flip(false);
    const Image source = read_image_file((fixture_dir() / std::string(entry["source"])).string(), 0);
    const TransformPlan plan = plan_transforms(source.width, source.height, config, 123);
    EXPECT_EQ(plan.resized_width, entry["resized_width"]);
    EXPECT_EQ(plan.resized_height, entry["resized_height"]);
    EXPECT_EQ(plan.crop_x, entry["center_left"]);
    EXPECT_EQ(plan.crop_y, entry["center_top"]);
    EXPECT_FALSE(plan.flip);

    const Image resized = testing::read_raw_rgb((fixture_dir() / std::string(entry["resized"])).string(),
                                                entry["resized_width"], entry["resized_height"]);
    const int r = config.resolution();
    const Image expected = crop(resized, entry["center_left"], entry["center_top"], r);
    const torch::Tensor tensor = apply_transforms(source, config, 123);
    ASSERT_EQ(tensor.sizes(), (std::vector<int64_t>{3, r, r}));
    ASSERT_EQ(tensor.dtype(), torch::kFloat32);
    ASSERT_TRUE(tensor.is_contiguous());
    // ToTensor then x * 2 - 1, as float32 exactly.
    const torch::Tensor reference =
        torch::from_blob(const_cast<std::uint8_t*>(expected.pixels.data()), {r, r, 3}, torch::kUInt8)
            .permute({2, 0, 1})
            .to(torch::kFloat32)
            .div(255.0f)
            .mul(2.0f)
            .sub(1.0f);
    const double max_error = (tensor - reference).abs().max().item<double>();
    EXPECT_LE(max_error, 1e-6) << "in 8-bit units: " << max_error * 127.5;
  }
}

// apply_transforms resizes, crops, mirrors and splits the channels in one pass (the RGB kernel
// has a vectorised path on x86): mirrored windows of every fixture against PIL's pixels.
TEST(Transforms, MirroredWindowsMatchPil) {
  const auto manifest = fixture_manifest();
  for (const auto& entry : manifest["transforms"]) {
    SCOPED_TRACE(std::string(entry["resized"]));
    const Image source = read_image_file((fixture_dir() / std::string(entry["source"])).string(), 0);
    const Image resized = testing::read_raw_rgb((fixture_dir() / std::string(entry["resized"])).string(),
                                                entry["resized_width"], entry["resized_height"]);
    TransformConfig config;
    config.set_resolution(entry["resolution"]);
    config.set_interpolation(interpolation_named(entry["interpolation"]));
    const int r = config.resolution();
    TransformPlan plan = plan_transforms(source.width, source.height, config, 0);
    // The far corner: the last columns, where the vectorised kernel hands over to the scalar one.
    plan.crop_x = plan.resized_width - r;
    plan.crop_y = plan.resized_height - r;
    for (bool flip : {false, true}) {
      plan.flip = flip;
      const torch::Tensor tensor = apply_plan_to_tensor(source, plan, config);
      const torch::Tensor expected =
          torch::from_blob(const_cast<std::uint8_t*>(resized.pixels.data()),
                           {resized.height, resized.width, 3}, torch::kUInt8)
              .slice(0, plan.crop_y, plan.crop_y + r)
              .slice(1, plan.crop_x, plan.crop_x + r)
              .permute({2, 0, 1});
      const torch::Tensor oriented = flip ? expected.flip({2}) : expected;
      const torch::Tensor reference = oriented.to(torch::kFloat32).div(255.0f).mul(2.0f).sub(1.0f);
      EXPECT_TRUE(torch::equal(tensor, reference)) << "flip " << flip << ", max error "
                                                   << (tensor - reference).abs().max().item<double>();
    }
  }
}

TEST(Transforms, RandomCropAndFlipAreSeededAndEqualCropOfTheFullResize) {
  const auto manifest = fixture_manifest();
  const auto& entry = manifest["transforms"][3 * 4 + 2];  // 700x500 -> 358x256, BICUBIC
  ASSERT_EQ(entry["interpolation"], "BICUBIC");
  const Image source = read_image_file((fixture_dir() / std::string(entry["source"])).string(), 0);
  const Image resized = testing::read_raw_rgb((fixture_dir() / std::string(entry["resized"])).string(),
                                              entry["resized_width"], entry["resized_height"]);
  TransformConfig config;
  config.set_resolution(entry["resolution"]);
  std::set<int> xs;
  int flips = 0;
  const int trials = 200;
  for (int seed = 0; seed < trials; ++seed) {
    const TransformPlan plan = plan_transforms(source.width, source.height, config, seed);
    EXPECT_EQ(plan.crop_y, 0);
    EXPECT_GE(plan.crop_x, 0);
    EXPECT_LE(plan.crop_x, plan.resized_width - config.resolution());
    xs.insert(plan.crop_x);
    flips += plan.flip;
    const TransformPlan again = plan_transforms(source.width, source.height, config, seed);
    EXPECT_EQ(again.crop_x, plan.crop_x);
    EXPECT_EQ(again.flip, plan.flip);
    if (seed < 6) {
      Image expected = crop(resized, plan.crop_x, plan.crop_y, config.resolution());
      if (plan.flip) {
        Image flipped = expected;
        for (int y = 0; y < expected.height; ++y) {
          for (int x = 0; x < expected.width; ++x) {
            for (int c = 0; c < 3; ++c) {
              flipped.pixels[(y * expected.width + x) * 3 + c] =
                  expected.pixels[(y * expected.width + expected.width - 1 - x) * 3 + c];
            }
          }
        }
        expected = flipped;
      }
      EXPECT_EQ(compare(apply_plan(source, plan, config), expected).max, 0) << "seed " << seed;
      EXPECT_TRUE(torch::equal(apply_transforms(source, config, seed),
                               image_to_tensor(apply_plan(source, plan, config))));
    }
  }
  EXPECT_GT(xs.size(), 50u);  // 103 possible offsets
  EXPECT_GT(flips, trials / 2 - 30);
  EXPECT_LT(flips, trials / 2 + 30);
  config.set_random_flip(false);
  for (int seed = 0; seed < 50; ++seed) EXPECT_FALSE(plan_transforms(700, 500, config, seed).flip);
}

TEST(Transforms, TorchvisionResizeSizeRule) {
  EXPECT_EQ(resized_size_for_short_side(256, 256, 512), std::make_pair(512, 512));
  EXPECT_EQ(resized_size_for_short_side(300, 200, 512), std::make_pair(768, 512));
  EXPECT_EQ(resized_size_for_short_side(200, 333, 512), std::make_pair(512, 852));  // int(852.48)
  EXPECT_EQ(resized_size_for_short_side(1000, 3, 7), std::make_pair(2333, 7));
  EXPECT_THROW(resized_size_for_short_side(0, 3, 7), std::invalid_argument);
}

TEST(Transforms, RejectsNonRgbImages) {
  Image gray;
  gray.width = gray.height = 4;
  gray.channels = 1;
  gray.pixels.assign(16, 0);
  EXPECT_THROW(apply_transforms(gray, TransformConfig(), 0), std::invalid_argument);
}

TEST(Transforms, ResizeWindowEqualsCropOfFullResize) {
  Image image;
  image.width = 37;
  image.height = 23;
  image.channels = 4;
  for (int i = 0; i < 37 * 23 * 4; ++i) image.pixels.push_back(static_cast<std::uint8_t>((i * 7919) % 251));
  for (ResampleFilter filter :
       {ResampleFilter::NEAREST, ResampleFilter::BILINEAR, ResampleFilter::BICUBIC, ResampleFilter::LANCZOS}) {
    for (auto [w, h] : {std::pair{60, 50}, std::pair{20, 23}, std::pair{37, 11}, std::pair{13, 40}}) {
      const Image full = resize_window(image, w, h, filter, true);
      const Image window = resize_window(image, w, h, filter, true, {w / 3, h / 4, w / 2, h / 2});
      Image expected;
      expected.width = w / 2;
      expected.height = h / 2;
      expected.channels = 4;
      for (int y = h / 4; y < h / 4 + h / 2; ++y) {
        const auto* row = full.pixels.data() + (static_cast<std::size_t>(y) * w + w / 3) * 4;
        expected.pixels.insert(expected.pixels.end(), row, row + (w / 2) * 4);
      }
      EXPECT_EQ(window.pixels, expected.pixels) << w << "x" << h;
    }
  }
  EXPECT_THROW(resize_window(image, 10, 10, ResampleFilter::BICUBIC, true, {5, 5, 6, 2}), std::invalid_argument);
}

}  // namespace
}  // namespace sdtrain

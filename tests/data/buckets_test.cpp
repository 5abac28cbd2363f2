// Aspect-ratio buckets: kohya's bucket list and assignment on a table of sizes, the config's
// errors, and the bucketed transform plan against a full resize then crop.
#include <gtest/gtest.h>

#include "framework/data/buckets.h"
#include "framework/data/image_resize.h"
#include "framework/data/transforms.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

BucketConfig bucket_config(int min_side = 256, int max_side = 1024, int step = 64, bool no_upscale = false) {
  BucketConfig config;
  config.set_min_side(min_side);
  config.set_max_side(max_side);
  config.set_step(step);
  config.set_no_upscale(no_upscale);
  return config;
}

// kohya's make_bucket_resolutions((512, 512), 256, 1024, 64): 17 buckets. Widths from 704 on give
// floor(floor(262144 / w) / 64) x 64 = 320 or 256, so (704, 320) and (320, 704) are among them.
TEST(Buckets, ResolutionsAreKohyas) {
  const std::vector<BucketResolution> expected = {
      {256, 832}, {256, 896}, {256, 960}, {256, 1024}, {320, 704}, {320, 768}, {384, 640}, {448, 576}, {512, 512},
      {576, 448}, {640, 384}, {704, 320}, {768, 320}, {832, 256}, {896, 256}, {960, 256}, {1024, 256}};
  EXPECT_EQ(make_bucket_resolutions(512 * 512, 256, 1024, 64), expected);
  EXPECT_EQ(BucketTable(bucket_config(), 512).predefined(), expected) << "max_area 0 = resolution squared";
  // A small table: area 128^2, sides 64..256.
  EXPECT_EQ(make_bucket_resolutions(128 * 128, 64, 256, 64),
            (std::vector<BucketResolution>{{64, 192}, {64, 256}, {128, 128}, {192, 64}, {256, 64}}));
}

struct Expected {
  int width, height;               // the image
  int bucket_width, bucket_height;
  int resized_width, resized_height;
  bool dropped;
};

void expect_assignments(const BucketTable& table, const std::vector<Expected>& rows) {
  for (const Expected& row : rows) {
    SCOPED_TRACE(std::to_string(row.width) + "x" + std::to_string(row.height));
    const BucketAssignment got = table.assign(row.width, row.height);
    EXPECT_EQ(got.bucket, (BucketResolution{row.bucket_width, row.bucket_height}));
    EXPECT_EQ(got.resized_width, row.resized_width);
    EXPECT_EQ(got.resized_height, row.resized_height);
    EXPECT_EQ(got.dropped, row.dropped);
  }
}

// BucketManager.select_bucket at 512 x 512: nearest aspect ratio, the fitting side matched, the
// other int(x + 0.5); an image whose size is a bucket keeps it.
TEST(Buckets, AssignmentIsKohyas) {
  expect_assignments(BucketTable(bucket_config(), 512), {
                                                            {512, 512, 512, 512, 512, 512, false},
                                                            {1024, 768, 576, 448, 597, 448, false},
                                                            {640, 480, 576, 448, 597, 448, false},
                                                            {300, 200, 640, 384, 640, 427, false},
                                                            {1920, 1080, 640, 384, 683, 384, false},
                                                            {333, 777, 320, 768, 329, 768, false},
                                                            {100, 1000, 256, 1024, 256, 2560, false},
                                                            {576, 448, 576, 448, 576, 448, false},
                                                        });
}

// --bucket_no_upscale: shrunk to the area when larger (one side rounded to the step, the nearer
// aspect ratio kept), the bucket rounded down; a side below min_side drops the image here.
TEST(Buckets, NoUpscaleOnlyShrinksAndDropsWhatIsTooSmall) {
  expect_assignments(BucketTable(bucket_config(256, 1024, 64, true), 512),
                     {
                         {2000, 1000, 640, 320, 640, 320, false},
                         {700, 500, 512, 384, 538, 384, false},
                         {4000, 3000, 512, 384, 512, 384, false},
                         {513, 300, 512, 256, 513, 300, false},
                         {300, 200, 256, 192, 300, 200, true},
                     });
  expect_assignments(BucketTable(bucket_config(64, 1024, 64, true), 512), {{300, 200, 256, 192, 300, 200, false}});
}

std::string config_error(const BucketConfig& config, int resolution) {
  try {
    BucketTable table(config, resolution);
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "";
}

TEST(Buckets, BadSettingsNameTheField) {
  EXPECT_EQ(config_error(bucket_config(256, 1024, 32), 512),
            "data.buckets.step: must be a positive multiple of 64 (the SD UNet needs latents divisible by 8), got 32");
  EXPECT_EQ(config_error(bucket_config(300, 1024, 64), 512),
            "data.buckets.min_side: must be a positive multiple of data.buckets.step 64, got 300");
  EXPECT_EQ(config_error(bucket_config(256, 192, 64), 512),
            "data.buckets.max_side: must be a multiple of data.buckets.step 64 and at least data.buckets.min_side "
            "256, got 192");
  EXPECT_EQ(config_error(bucket_config(256, 512, 64), 768),
            "data.buckets.max_side: 512 is below the side 768 of the square of max_area 589824");
}

Image gradient_image(int width, int height) {
  Image image;
  image.width = width;
  image.height = height;
  image.channels = 3;
  image.pixels.resize(static_cast<std::size_t>(width) * height * 3);
  for (std::size_t p = 0; p < image.pixels.size(); ++p) image.pixels[p] = static_cast<uint8_t>((p * 7 + p / 97) % 256);
  return image;
}

// The bucketed plan covers the bucket, crops inside the resized image (centre: torchvision's
// offsets), and its pixels are the full resize cropped (and flipped) afterwards.
TEST(Buckets, TransformPlanCropsTheCoveringResize) {
  const BucketTable table(bucket_config(64, 256, 64), 128);
  const BucketAssignment assignment = table.assign(90, 30);  // aspect 3: bucket 192 x 64
  ASSERT_EQ(assignment.bucket, (BucketResolution{192, 64}));
  TransformConfig config;
  config.set_crop(TransformConfig::CENTER);
  config.set_random_flip(false);
  const TransformPlan center = plan_bucket_transforms(assignment, config, 1);
  EXPECT_EQ(center.crop_width, 192);
  EXPECT_EQ(center.crop_height, 64);
  EXPECT_EQ(center.crop_x, 0);
  EXPECT_TRUE(center.bucketed);
  EXPECT_NE(describe_plan(center, config).find("bucket=192x64"), std::string::npos) << describe_plan(center, config);

  const TransformPlan tall = plan_bucket_transforms(table.assign(50, 140), config, 1);  // bucket 64 x 192
  EXPECT_EQ(tall.resized_width, 69);  // int(50 x 192 / 140 + 0.5)
  EXPECT_EQ(tall.resized_height, 192);
  EXPECT_EQ(tall.crop_x, 2) << "round((69 - 64) / 2 = 2.5): torchvision's centre, half to even";
  EXPECT_EQ(tall.crop_y, 0);

  config.set_crop(TransformConfig::RANDOM);
  config.set_random_flip(true);
  const Image image = gradient_image(50, 140);
  bool flipped = false;
  bool unflipped = false;
  for (uint64_t seed = 0; seed < 8; ++seed) {
    const TransformPlan plan = plan_bucket_transforms(table.assign(50, 140), config, seed);
    ASSERT_GE(plan.crop_y, 0);
    ASSERT_LE(plan.crop_y + plan.crop_height, plan.resized_height);
    (plan.flip ? flipped : unflipped) = true;
    const torch::Tensor got = apply_plan_to_tensor(image, plan, config);
    ASSERT_EQ(got.sizes(), (std::vector<int64_t>{3, 192, 64}));
    const Image full = resize_window(image, plan.resized_width, plan.resized_height,
                                     resample_filter(config.interpolation()), config.antialias());
    torch::Tensor expected = torch::from_blob(const_cast<uint8_t*>(full.pixels.data()),
                                              {full.height, full.width, 3}, torch::kUInt8)
                                 .narrow(0, plan.crop_y, 192)
                                 .narrow(1, plan.crop_x, 64)
                                 .permute({2, 0, 1})
                                 .to(torch::kFloat32)
                                 .div(255)
                                 .mul(2)
                                 .sub(1);
    if (plan.flip) expected = expected.flip({2});
    EXPECT_TRUE(torch::allclose(got, expected, 0, 1e-6)) << "seed " << seed;
  }
  EXPECT_TRUE(flipped && unflipped);
}

}  // namespace
}  // namespace sdtrain

// The data loader with aspect-ratio buckets on an image folder of known sizes: the plan and its
// report, sizes read split over ranks, micro-batches of one bucket with the samples' original size
// and crop, unreadable and changed files under the bad-data policy.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "framework/data/bucket_plan.h"
#include "framework/data/data_loader.h"
#include "tests/common/test_env.h"
#include "tests/data/dataset_support.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

/// Buckets of area 128^2, sides 64..256: (64,192) (64,256) (128,128) (192,64) (256,64).
BucketConfig small_buckets(bool no_upscale = false) {
  BucketConfig config;
  config.set_min_side(64);
  config.set_max_side(256);
  config.set_step(64);
  config.set_no_upscale(no_upscale);
  return config;
}

/// img<i>.png of sizes[i], captioned "image <i>"; then the image_folder over it.
std::shared_ptr<const Dataset> folder_of(const fs::path& dir, const std::vector<std::pair<int, int>>& sizes) {
  fs::create_directories(dir);
  std::ofstream csv(dir / "metadata.csv");
  csv << "file_name,text\n";
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const std::string name = "img" + std::to_string(i) + ".png";
    testing::write_test_png((dir / name).string(), sizes[i].first, sizes[i].second, static_cast<int>(i));
    csv << name << ",image " << i << "\n";
  }
  csv.close();
  ImageFolderOptions options;
  options.set_root(dir.string());
  return std::shared_ptr<const Dataset>(testing::make_dataset("image_folder", options).release());
}

/// 6 square (two upscaled from 40 px, two downscaled from 200 px, two kept at 128), 3 wide
/// (aspect 3: 96x32 upscaled, 384x128 downscaled, 192x64 kept), 1 tall (30x90).
const std::vector<std::pair<int, int>> kSizes = {{40, 40},   {40, 40},  {200, 200}, {200, 200}, {128, 128},
                                                 {128, 128}, {96, 32},  {384, 128}, {192, 64},  {30, 90}};

TEST(BucketPlan, ReportCountsImagesPerBucketAndWhatWasScaled) {
  const fs::path dir = test::scratch_dir();
  const auto dataset = folder_of(dir / "data", kSizes);
  const BucketTable table(small_buckets(), 128);
  const BucketPlan plan = plan_buckets(*dataset, table, 1 << 20, 2, 0, 1, nullptr);
  ASSERT_EQ(plan.buckets, (std::vector<BucketResolution>{{64, 192}, {128, 128}, {192, 64}}));
  EXPECT_EQ(plan.bucket_of, (std::vector<int>{1, 1, 1, 1, 1, 1, 2, 2, 2, 0}));
  EXPECT_EQ(plan.dropped, 0);
  EXPECT_EQ(plan.unreadable_count, 0);
  EXPECT_EQ(bucket_report_csv(plan, 4),
            "width,height,aspect,images,upscaled,downscaled,global_batches,padding,below_global_batch\n"
            "64,192,0.333333,1,1,0,1,3,1\n"
            "128,128,1.000000,6,2,2,2,2,0\n"
            "192,64,3.000000,3,1,1,1,1,1\n");
  const std::string report = format_bucket_report(plan, 4);
  EXPECT_NE(report.find("buckets: 3 in use, 10 images in 4 global batches of 4 per epoch"), std::string::npos) << report;
  EXPECT_NE(report.find("fewer images than a global batch"), std::string::npos) << report;

  // With no_upscale the 40 px images, 96x32 and 30x90 have a side below min_side 64: dropped; the
  // larger ones shrink into the same buckets as before.
  const BucketPlan shrink_only = plan_buckets(*dataset, BucketTable(small_buckets(true), 128), 1 << 20, 0, 0, 1, nullptr);
  EXPECT_EQ(shrink_only.dropped, 4);
  EXPECT_EQ(shrink_only.bucket_of, (std::vector<int>{-1, -1, 0, 0, 0, 0, -1, 1, 1, -1}));
  EXPECT_EQ(shrink_only.buckets, (std::vector<BucketResolution>{{128, 128}, {192, 64}}));
  EXPECT_NE(format_bucket_report(shrink_only, 4).find("dropped (no_upscale, a side below min_side): 4"),
            std::string::npos);
}

// Each rank reads every other image; the sum over ranks is the plan one rank reads alone.
TEST(BucketPlan, SizesReadSplitOverRanksGiveTheSamePlan) {
  const fs::path dir = test::scratch_dir();
  const auto dataset = folder_of(dir / "data", kSizes);
  const BucketTable table(small_buckets(), 128);
  const BucketPlan alone = plan_buckets(*dataset, table, 1 << 20, 1, 0, 1, nullptr);
  torch::Tensor rank1_sizes;
  plan_buckets(*dataset, table, 1 << 20, 1, 1, 2, [&](torch::Tensor& sizes) { rank1_sizes = sizes.clone(); });
  ASSERT_TRUE(rank1_sizes.defined());
  EXPECT_EQ(rank1_sizes.index({0, 0}).item<int64_t>(), 0) << "rank 1 does not read image 0";
  const BucketPlan rank0 =
      plan_buckets(*dataset, table, 1 << 20, 1, 0, 2, [&](torch::Tensor& sizes) { sizes += rank1_sizes; });
  EXPECT_EQ(rank0.bucket_of, alone.bucket_of);
  EXPECT_EQ(rank0.buckets, alone.buckets);
  EXPECT_EQ(bucket_plan_digest(rank0), bucket_plan_digest(alone));
}

DataLoaderOptions bucket_loader_options(const std::shared_ptr<const Dataset>& dataset, int batch_size) {
  DataLoaderOptions options;
  options.batch_size = batch_size;
  options.num_workers = 2;
  options.seed = 5;
  options.transforms.set_resolution(128);
  options.bucket_table = std::make_shared<const BucketTable>(small_buckets(), 128);
  options.bucket_plan =
      std::make_shared<const BucketPlan>(plan_buckets(*dataset, *options.bucket_table, 1 << 20, 1, 0, 1, nullptr));
  return options;
}

TEST(BucketLoader, MicroBatchesHoldOneBucketAndRecordSizeAndCrop) {
  const fs::path dir = test::scratch_dir();
  const auto dataset = folder_of(dir / "data", kSizes);
  DataLoader loader(dataset, bucket_loader_options(dataset, 2));
  ASSERT_EQ(loader.batches_per_epoch(), 1 + 3 + 2) << "ceil(1/2) + ceil(6/2) + ceil(3/2)";
  std::set<std::string> keys;
  loader.seek(0, 0);
  while (auto batch = loader.next()) {
    ASSERT_EQ(batch->pixels.size(0), 2);
    const int64_t height = batch->pixels.size(2);
    const int64_t width = batch->pixels.size(3);
    for (std::size_t j = 0; j < batch->keys.size(); ++j) {
      keys.insert(batch->keys[j]);
      const int index = std::stoi(batch->keys[j].substr(3));
      const PixelsOrigin& origin = batch->origins[j];
      EXPECT_EQ(origin.original_width, kSizes[index].first) << batch->keys[j];
      EXPECT_EQ(origin.original_height, kSizes[index].second) << batch->keys[j];
      const double aspect = static_cast<double>(kSizes[index].first) / kSizes[index].second;
      EXPECT_EQ(width > height, aspect > 1) << batch->keys[j] << " in a " << width << "x" << height << " batch";
      EXPECT_GE(origin.crop_left, 0);
      EXPECT_GE(origin.crop_top, 0);
    }
  }
  EXPECT_EQ(keys.size(), kSizes.size()) << "every image in the epoch";
}

// An unreadable file is counted before training and never dealt; a file whose size changed after
// the plan is a bad sample, replaced by one of its bucket.
TEST(BucketLoader, UnreadableAndChangedFilesAreBadSamples) {
  const fs::path dir = test::scratch_dir();
  auto sizes = kSizes;
  const auto dataset = folder_of(dir / "data", sizes);
  { std::ofstream(dir / "data" / "img4.png") << "not a png"; }
  DataLoaderOptions options = bucket_loader_options(dataset, 2);
  EXPECT_EQ(options.bucket_plan->unreadable_count, 1);
  ASSERT_EQ(options.bucket_plan->unreadable.size(), 1u);
  EXPECT_EQ(options.bucket_plan->unreadable[0].key, "img4.png");
  options.shuffle = false;
  DataLoader loader(dataset, options);
  EXPECT_EQ(loader.bad_sample_keys(), (std::set<std::string>{"img4.png"}));
  // img0 (40x40, square bucket) becomes wide: its batch takes the next square image instead.
  testing::write_test_png((dir / "data" / "img0.png").string(), 90, 30, 0);
  loader.seek(0, 0);
  std::map<std::string, int> seen;
  while (auto batch = loader.next()) {
    for (const auto& key : batch->keys) ++seen[key];
  }
  EXPECT_EQ(seen.count("img0.png"), 0u);
  EXPECT_EQ(seen.count("img4.png"), 0u);
  EXPECT_EQ(loader.bad_sample_keys(), (std::set<std::string>{"img0.png", "img4.png"}));
}

}  // namespace
}  // namespace sdtrain

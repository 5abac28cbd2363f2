// The stable_diffusion encoder caches (SdCacheOptions): training with them is the same
// computation as without; latents are cached per (image, flip) and, once cached, images are not
// decoded; a disk cache survives a new run and is invalidated by a changed image, resolution or
// encoder; a corrupt entry is recomputed with a warning; random crops with a choice of window are
// not cached; impossible settings are refused; the train split's preview of a batch, cached or
// not. Tiny models on 16 px images resized to 32 px.
#include <gtest/gtest.h>
#include <google/protobuf/text_format.h>

#include <ATen/autocast_mode.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "framework/data/bucket_plan.h"
#include "framework/data/data_loader.h"
#include "framework/data/image_codec.h"
#include "framework/data/tensor_cache.h"
#include "framework/dist/process_group.h"
#include "framework/log/logger.h"
#include "framework/train/autocast.h"
#include "framework/train/trainer.h"
#include "plugins/builtin_plugins.h"
#include "plugins/datasets/datasets.pb.h"
#include "plugins/models/stable_diffusion/stable_diffusion_model.h"
#include "sdtrain/errors.h"
#include "tests/common/test_env.h"
#include "tests/data/dataset_support.h"
#include "tests/train/tiny_sd_model.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

using testing::kTinySd;
using testing::make_tiny_model;

/// An image folder of `count` images (captions alternate between two strings).
fs::path make_folder(const fs::path& dir, int count, int width = 16, int height = 16) {
  fs::create_directories(dir);
  std::ofstream csv(dir / "metadata.csv");
  csv << "file_name,text\n";
  for (int i = 0; i < count; ++i) {
    const std::string name = "img" + std::to_string(i) + ".png";
    testing::write_test_png((dir / name).string(), width, height, i);
    csv << name << "," << (i % 2 == 0 ? "a red square" : "a blue square") << "\n";
  }
  return dir;
}

std::shared_ptr<const Dataset> open_folder(const fs::path& dir) {
  ImageFolderOptions options;
  options.set_root(dir.string());
  return std::shared_ptr<const Dataset>(testing::make_dataset("image_folder", options).release());
}

DataLoaderOptions loader_options(const StableDiffusionModel* cached_model, bool flip, int resolution = 32,
                                 TransformConfig::Crop crop = TransformConfig::RANDOM) {
  DataLoaderOptions options;
  options.batch_size = 2;
  options.num_workers = 1;
  options.seed = 11;
  options.transforms.set_resolution(resolution);
  options.transforms.set_random_flip(flip);
  options.transforms.set_crop(crop);
  if (cached_model) options.pixel_cache = cached_model->pixel_cache();
  return options;
}

/// One epoch of losses (no optimizer step: the weights stay, so every step is comparable).
/// `decoded` counts the images the loader decoded.
std::vector<double> run_epoch(StableDiffusionModel& model, DataLoader& loader, int64_t epoch, int64_t* decoded = nullptr) {
  std::vector<double> losses;
  loader.seek(epoch, 0);
  while (auto batch = loader.next()) {
    if (decoded) *decoded += batch->pixels.size(0);
    losses.push_back(model.training_loss(*batch).item<double>());
  }
  model.on_train_epoch_end(epoch);  // as the trainer does after the epoch's last micro-batch
  return losses;
}

/// Captures log lines in a file for the test's duration.
class LogCapture {
 public:
  explicit LogCapture(const fs::path& file) : file_(file) {
    LogOptions options;
    options.file = file.string();
    configure_logging(options);
  }
  ~LogCapture() { configure_logging(LogOptions{}); }
  std::string text() const {
    std::ifstream in(file_);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

 private:
  fs::path file_;
};

int count_occurrences(const std::string& text, const std::string& needle) {
  int n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

TEST(EncoderCache, CachedTrainingStepsEqualUncachedOnes) {
  const fs::path dir = test::scratch_dir();
  auto dataset = open_folder(make_folder(dir / "data", 4));
  auto plain = make_tiny_model("");
  auto cached = make_tiny_model("cache { latents: true text_embeddings: true }");
  DataLoaderOptions plain_options = loader_options(nullptr, true);
  DataLoaderOptions cached_options = loader_options(cached.get(), true);
  plain_options.caption_dropout = cached_options.caption_dropout = 0.3f;  // the empty caption is cached too
  DataLoader plain_loader(dataset, plain_options);
  DataLoader cached_loader(dataset, cached_options);

  double max_loss_difference = 0;
  double max_grad_difference = 0;
  for (int64_t epoch = 0; epoch < 4; ++epoch) {
    plain_loader.seek(epoch, 0);
    cached_loader.seek(epoch, 0);
    while (auto a = plain_loader.next()) {
      auto b = cached_loader.next();
      ASSERT_TRUE(b.has_value());
      ASSERT_EQ(a->seeds, b->seeds);
      ASSERT_EQ(a->captions, b->captions);
      for (auto* module : {&plain->trainable_module(), &cached->trainable_module()}) module->zero_grad();
      const torch::Tensor loss_a = plain->training_loss(*a);
      const torch::Tensor loss_b = cached->training_loss(*b);
      loss_a.backward();
      loss_b.backward();
      const double difference = std::abs(loss_a.item<double>() - loss_b.item<double>());
      max_loss_difference = std::max(max_loss_difference, difference);
      EXPECT_LE(difference, 1e-5 * std::abs(loss_a.item<double>())) << "epoch " << epoch;
      // All UNet gradients as one vector: some (e.g. attention key biases, whose exact gradient is
      // 0) hold only rounding noise, so they are compared on the scale of the whole gradient.
      std::vector<torch::Tensor> flat_a, flat_b;
      for (const auto& p : plain->trainable_module().parameters()) flat_a.push_back(p.grad().flatten());
      for (const auto& p : cached->trainable_module().parameters()) flat_b.push_back(p.grad().flatten());
      const torch::Tensor ga = torch::cat(flat_a);
      const torch::Tensor gb = torch::cat(flat_b);
      const double scale = ga.abs().max().item<double>();
      const double diff = (ga - gb).abs().max().item<double>();
      max_grad_difference = std::max(max_grad_difference, diff / scale);
      EXPECT_GT(scale, 0.0);
      EXPECT_LE(diff, 1e-4 * scale) << "epoch " << epoch;
      if (epoch == 0) {
        EXPECT_TRUE(torch::equal(ga, gb)) << "the first epoch computes the same batches";
      }
    }
    if (epoch == 0) {
      // The first epoch encodes every sample once, in the same batches as the uncached run.
      EXPECT_EQ(cached->cache_counts().latent_misses, 4);
      EXPECT_EQ(cached->cache_counts().latent_hits, 0);
      EXPECT_EQ(max_loss_difference, 0.0) << "the first epoch computes the same batches";
    }
  }
  const SdCacheCounts& counts = cached->cache_counts();
  EXPECT_EQ(counts.latent_hits + counts.latent_misses, 16);
  EXPECT_GT(counts.latent_hits, 0);
  EXPECT_LE(counts.latent_misses, 8);  // at most one encoding per (image, flip)
  EXPECT_GT(counts.text_hits, 0);
  EXPECT_LE(counts.text_misses, 3);  // "a red square", "a blue square", ""
  EXPECT_EQ(plain->cache_counts().latent_misses, 0);
  std::cout << "max |loss difference| " << max_loss_difference << ", max gradient difference / max |gradient| "
            << max_grad_difference << "\n";
}

// Aspect-ratio buckets: non-square micro-batches train, and a bucketed image whose crop has no
// choice of window is cached with its bucket in the key; cached and uncached losses agree.
TEST(EncoderCache, BucketedLatentsAreCachedAndEqualUncached) {
  const fs::path dir = test::scratch_dir();
  const fs::path data = dir / "data";
  fs::create_directories(data);
  {
    std::ofstream csv(data / "metadata.csv");
    csv << "file_name,text\n";
    for (int i = 0; i < 4; ++i) {
      const std::string name = "img" + std::to_string(i) + ".png";
      // Aspect 3 and 1/3: buckets 192x64 and 64x192, reached by an exact 4x scale (no crop choice).
      testing::write_test_png((data / name).string(), i < 2 ? 48 : 16, i < 2 ? 16 : 48, i);
      csv << name << "," << (i % 2 == 0 ? "a red square" : "a blue square") << "\n";
    }
  }
  auto dataset = open_folder(data);
  BucketConfig buckets;
  buckets.set_min_side(64);
  buckets.set_max_side(256);
  auto table = std::make_shared<const BucketTable>(buckets, 128);
  auto plan = std::make_shared<const BucketPlan>(plan_buckets(*dataset, *table, 1 << 20, 0, 0, 1, nullptr));
  auto plain = make_tiny_model("");
  auto cached = make_tiny_model("cache { latents: true }");
  DataLoaderOptions plain_options = loader_options(nullptr, true, 128);
  DataLoaderOptions cached_options = loader_options(cached.get(), true, 128);
  for (auto* options : {&plain_options, &cached_options}) {
    options->bucket_table = table;
    options->bucket_plan = plan;
  }
  DataLoader plain_loader(dataset, plain_options);
  DataLoader cached_loader(dataset, cached_options);
  std::set<std::vector<int64_t>> shapes;
  for (int64_t epoch = 0; epoch < 6; ++epoch) {
    plain_loader.seek(epoch, 0);
    cached_loader.seek(epoch, 0);
    while (auto a = plain_loader.next()) {
      auto b = cached_loader.next();
      ASSERT_TRUE(b.has_value());
      shapes.insert(a->pixels.sizes().vec());
      for (const PixelsOrigin& origin : b->origins) {
        EXPECT_TRUE(origin.deterministic) << origin.transform;
        EXPECT_NE(origin.transform.find("bucket="), std::string::npos) << origin.transform;
      }
      const double loss_a = plain->training_loss(*a).item<double>();
      const double loss_b = cached->training_loss(*b).item<double>();
      EXPECT_TRUE(std::isfinite(loss_a));
      EXPECT_NEAR(loss_a, loss_b, 1e-5 * std::abs(loss_a)) << "epoch " << epoch;
    }
  }
  EXPECT_EQ(shapes, (std::set<std::vector<int64_t>>{{2, 3, 64, 192}, {2, 3, 192, 64}}));
  EXPECT_GT(cached->cache_counts().latent_hits, 0);
  EXPECT_LE(cached->cache_counts().latent_misses, 8) << "at most one encoding per (image, flip)";
}

TEST(EncoderCache, LatentsAreCachedPerFlipAndCachedImagesAreNotDecoded) {
  const fs::path dir = test::scratch_dir();
  auto dataset = open_folder(make_folder(dir / "data", 2));
  auto model = make_tiny_model("cache { latents: true }");
  DataLoader loader(dataset, loader_options(model.get(), true));
  // Epochs until both images were seen with both flips.
  std::set<std::pair<std::string, bool>> seen;
  int64_t epoch = 0;
  for (; epoch < 30 && seen.size() < 4; ++epoch) {
    loader.seek(epoch, 0);
    while (auto batch = loader.next()) {
      for (const PixelsOrigin& origin : batch->origins) {
        EXPECT_TRUE(origin.deterministic) << origin.transform;
        seen.insert({origin.source, origin.flip});
        EXPECT_NE(origin.transform.find(origin.flip ? "flip=1" : "flip=0"), std::string::npos);
      }
      model->training_loss(*batch);
    }
  }
  ASSERT_EQ(seen.size(), 4u) << "both flips of both images within 30 epochs";
  EXPECT_EQ(model->cache_counts().latent_misses, 4) << "one encoding per image and flip";
  auto cache = std::dynamic_pointer_cast<const SdLatentCache>(model->pixel_cache());
  ASSERT_TRUE(cache);
  EXPECT_EQ(cache->storage().memory_entries(), 4u);

  // Now every (image, flip) is cached: the next epochs neither decode nor encode.
  for (int64_t extra = 0; extra < 3; ++extra, ++epoch) {
    int64_t decoded = 0;
    loader.seek(epoch, 0);
    while (auto batch = loader.next()) {
      decoded += batch->pixels.size(0);
      ASSERT_EQ(batch->cached.size(), 2u);
      for (const auto& tensor : batch->cached) EXPECT_TRUE(tensor.defined());
      model->training_loss(*batch);
    }
    EXPECT_EQ(decoded, 0);
  }
  EXPECT_EQ(model->cache_counts().latent_misses, 4);

  // Without flips: one entry per image, and the second epoch encodes nothing.
  auto unflipped = make_tiny_model("cache { latents: true }");
  DataLoader plain(dataset, loader_options(unflipped.get(), false));
  run_epoch(*unflipped, plain, 0);
  EXPECT_EQ(unflipped->cache_counts().latent_misses, 2);
  int64_t decoded = 0;
  run_epoch(*unflipped, plain, 1, &decoded);
  EXPECT_EQ(unflipped->cache_counts().latent_misses, 2);
  EXPECT_EQ(unflipped->cache_counts().latent_hits, 2);
  EXPECT_EQ(decoded, 0);
}

// The image logger's train split (Model::preview_batch): the inputs are the batch's pixels as
// 8-bit images, the reconstructions the autoencoder's decoding of each posterior mean; a batch
// served from the latent cache has no inputs but the same reconstructions, and the preview
// neither counts nor stores cache entries.
TEST(BatchPreview, ReconstructionsDecodeThePosteriorMeanCachedOrNot) {
  const fs::path dir = test::scratch_dir();
  auto dataset = open_folder(make_folder(dir / "data", 4));
  auto model = make_tiny_model("cache { latents: true }");
  DataLoader loader(dataset, loader_options(model.get(), false));
  loader.seek(0, 0);
  std::optional<Batch> decoded = loader.next();
  ASSERT_TRUE(decoded && decoded->pixels.size(0) == 2);
  const BatchPreview first = model->preview_batch(*decoded, 5);  // more than the batch: all of it
  EXPECT_EQ(model->cache_counts().latent_misses + model->cache_counts().latent_hits, 0);
  ASSERT_EQ(first.inputs.size(), 2u);
  ASSERT_EQ(first.reconstructions.size(), 2u);
  EXPECT_EQ(first.height, 32);
  EXPECT_EQ(first.width, 32);
  const std::vector<Image> inputs = images_from_pixels(decoded->pixels);
  torch::Tensor decoded_mean;
  {
    torch::NoGradGuard no_grad;
    AutoencoderKL vae = model->networks().vae;  // a holder copy shares the module
    decoded_mean = vae->decode(vae->encode(decoded->pixels).mean().contiguous());
  }
  const std::vector<Image> reconstructions = images_from_pixels(decoded_mean);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(first.inputs[i].pixels, inputs[i].pixels) << i;
    EXPECT_EQ(first.inputs[i].width, 32);
    EXPECT_EQ(first.reconstructions[i].pixels, reconstructions[i].pixels) << i;
    EXPECT_NE(first.reconstructions[i].pixels, first.inputs[i].pixels) << "a random autoencoder changes the image";
  }

  model->training_loss(*decoded);  // caches both samples' moments
  loader.seek(0, 0);
  std::optional<Batch> cached = loader.next();
  ASSERT_TRUE(cached && cached->pixels.size(0) == 0 && cached->cached.size() == 2u);
  const BatchPreview again = model->preview_batch(*cached, 1);
  ASSERT_EQ(again.inputs.size(), 1u);
  EXPECT_TRUE(again.inputs[0].empty()) << "a cached sample's image was not decoded";
  ASSERT_EQ(again.reconstructions.size(), 1u);
  EXPECT_EQ(again.reconstructions[0].pixels, first.reconstructions[0].pixels);
  EXPECT_EQ(again.height, 32);
  EXPECT_EQ(model->cache_counts().latent_misses, 2) << "the preview counted nothing";
}

TEST(EncoderCache, DiskCacheSurvivesANewModelAndIsInvalidatedByChanges) {
  const fs::path dir = test::scratch_dir();
  const fs::path data = make_folder(dir / "data", 4);
  auto dataset = open_folder(data);
  const std::string disk = "cache { latents: true text_embeddings: true dir: \"cache\" }";
  {
    auto model = make_tiny_model(disk, 3, dir);
    DataLoader loader(dataset, loader_options(model.get(), false));
    run_epoch(*model, loader, 0);
    EXPECT_EQ(model->cache_counts().latent_misses, 4);
    EXPECT_EQ(model->cache_counts().text_misses, 2);
  }
  EXPECT_TRUE(fs::is_directory(dir / "cache" / "latents"));
  EXPECT_TRUE(fs::is_directory(dir / "cache" / "text_embeddings"));
  {
    // A new model (its memory empty) finds everything on disk: nothing decoded, nothing encoded.
    auto model = make_tiny_model(disk, 3, dir);
    DataLoader loader(dataset, loader_options(model.get(), false));
    int64_t decoded = 0;
    run_epoch(*model, loader, 0, &decoded);
    EXPECT_EQ(decoded, 0);
    EXPECT_EQ(model->cache_counts().latent_misses, 0);
    EXPECT_EQ(model->cache_counts().latent_hits, 4);
    EXPECT_EQ(model->cache_counts().text_misses, 0);
    EXPECT_EQ(model->cache_counts().text_hits, 4);
  }
  {
    // A changed image file (same name, same size) is a new entry; the others still hit.
    testing::write_test_png((data / "img1.png").string(), 16, 16, 7);
    auto model = make_tiny_model(disk, 3, dir);
    DataLoader loader(open_folder(data), loader_options(model.get(), false));
    run_epoch(*model, loader, 0);
    EXPECT_EQ(model->cache_counts().latent_misses, 1);
    EXPECT_EQ(model->cache_counts().latent_hits, 3);
  }
  {
    // Another resolution: every latent entry is new (text embeddings do not depend on it).
    auto model = make_tiny_model(disk, 3, dir);
    DataLoader loader(dataset, loader_options(model.get(), false, 48));
    run_epoch(*model, loader, 0);
    EXPECT_EQ(model->cache_counts().latent_misses, 4);
    EXPECT_EQ(model->cache_counts().text_misses, 0);
  }
  {
    // Other encoder weights: every entry is new.
    auto model = make_tiny_model(disk, 4, dir);
    DataLoader loader(dataset, loader_options(model.get(), false));
    run_epoch(*model, loader, 0);
    EXPECT_EQ(model->cache_counts().latent_misses, 4);
    EXPECT_EQ(model->cache_counts().text_misses, 2);
  }
}

TEST(EncoderCache, CorruptDiskEntriesAreRecomputedWithAWarning) {
  const fs::path dir = test::scratch_dir();
  auto dataset = open_folder(make_folder(dir / "data", 2));
  const std::string disk = "cache { latents: true text_embeddings: true dir: \"cache\" }";
  std::vector<PixelsOrigin> origins;
  {
    auto model = make_tiny_model(disk, 3, dir);
    DataLoader loader(dataset, loader_options(model.get(), false));
    loader.seek(0, 0);
    while (auto batch = loader.next()) {
      origins.insert(origins.end(), batch->origins.begin(), batch->origins.end());
      model->training_loss(*batch);
    }
    ASSERT_EQ(origins.size(), 2u);
    auto cache = std::dynamic_pointer_cast<const SdLatentCache>(model->pixel_cache());
    const std::string latent_file = cache->storage().path_for(cache->key(origins[0]));
    ASSERT_TRUE(fs::exists(latent_file));
    // Flip one byte at the end (tensor data): the header still parses, the checksum does not match.
    {
      std::fstream file(latent_file, std::ios::in | std::ios::out | std::ios::binary);
      file.seekg(-1, std::ios::end);
      char last = 0;
      file.get(last);
      file.seekp(-1, std::ios::end);
      file.put(static_cast<char>(last ^ 0x5A));
    }
    // Truncate the other image's entry.
    const std::string truncated = cache->storage().path_for(cache->key(origins[1]));
    fs::resize_file(truncated, fs::file_size(truncated) / 2);
  }
  const fs::path log = dir / "log.txt";
  {
    LogCapture capture(log);
    auto model = make_tiny_model(disk, 3, dir);
    DataLoader loader(dataset, loader_options(model.get(), false));
    run_epoch(*model, loader, 0);
    EXPECT_EQ(model->cache_counts().latent_misses, 2) << "both bad entries recomputed";
    EXPECT_EQ(model->cache_counts().text_misses, 0);
    const std::string text = capture.text();
    EXPECT_GE(count_occurrences(text, "cache: ignoring an unusable entry, it will be recomputed"), 2) << text;
    EXPECT_NE(text.find("does not match its checksum"), std::string::npos) << text;
  }
  {
    // The recomputed entries were rewritten and are good again.
    auto model = make_tiny_model(disk, 3, dir);
    DataLoader loader(dataset, loader_options(model.get(), false));
    run_epoch(*model, loader, 0);
    EXPECT_EQ(model->cache_counts().latent_misses, 0);
    EXPECT_EQ(model->cache_counts().latent_hits, 2);
  }
}

// In memory, a full cache keeps its first entries (replacing one is still allowed), does not
// store new keys and says so once.
TEST(TensorCache, MemoryLimitKeepsTheFirstEntriesAndWarnsOnce) {
  const fs::path dir = test::scratch_dir();
  const auto entry = [](float value) { return torch::full({1024}, value); };  // 4 KB each
  LogCapture capture(dir / "log.txt");
  TensorCache cache("", "cache.dir", 2 * 4096, "cache.max_memory_mb (test)");
  cache.put("a", entry(1));
  cache.put("b", entry(2));
  cache.put("c", entry(3));
  cache.put("d", entry(4));
  cache.put("a", entry(5));  // a replacement of the same size fits
  EXPECT_EQ(cache.memory_entries(), 2u);
  EXPECT_EQ(cache.memory_bytes(), 2 * 4096);
  EXPECT_TRUE(torch::equal(cache.get("a"), entry(5)));
  EXPECT_TRUE(torch::equal(cache.get("b"), entry(2)));
  EXPECT_FALSE(cache.get("c").defined());
  EXPECT_FALSE(cache.get("d").defined());
  const std::string text = capture.text();
  EXPECT_EQ(count_occurrences(text, "cache: the in-memory cache is full (2 entries, 8 KB of the cache.max_memory_mb "
                                    "(test) limit of 8 KB)"),
            1)
      << text;

  TensorCache unlimited("", "cache.dir");
  for (int i = 0; i < 10; ++i) unlimited.put(std::to_string(i), entry(static_cast<float>(i)));
  EXPECT_EQ(unlimited.memory_entries(), 10u);
}

TEST(EncoderCache, RandomCropWithAChoiceIsNotCached) {
  const fs::path dir = test::scratch_dir();
  // 24x16 images: resized to 48x32 for resolution 32, so a random crop has 17 windows.
  auto dataset = open_folder(make_folder(dir / "data", 4, 24, 16));
  const fs::path log = dir / "log.txt";
  LogCapture capture(log);
  auto model = make_tiny_model("cache { latents: true }");
  DataLoader loader(dataset, loader_options(model.get(), true));
  run_epoch(*model, loader, 0);
  int64_t decoded = 0;
  run_epoch(*model, loader, 1, &decoded);
  EXPECT_EQ(decoded, 4) << "nothing is found in the cache";
  EXPECT_EQ(model->cache_counts().latent_uncacheable, 8);
  EXPECT_EQ(model->cache_counts().latent_misses, 0);
  auto cache = std::dynamic_pointer_cast<const SdLatentCache>(model->pixel_cache());
  EXPECT_EQ(cache->storage().memory_entries(), 0u);
  const std::string text = capture.text();
  EXPECT_EQ(count_occurrences(text, "is not cached: its random crop has a choice of window"), 1) << text;
  EXPECT_NE(text.find("uncacheable (random crop)"), std::string::npos) << text;

  // Center crops of the same images are fixed given the flip: cached.
  auto centered = make_tiny_model("cache { latents: true }");
  DataLoader center_loader(dataset, loader_options(centered.get(), false, 32, TransformConfig::CENTER));
  run_epoch(*centered, center_loader, 0);
  run_epoch(*centered, center_loader, 1);
  EXPECT_EQ(centered->cache_counts().latent_misses, 4);
  EXPECT_EQ(centered->cache_counts().latent_hits, 4);
}

TEST(EncoderCache, ImpossibleSettingsAreRefusedNamingTheField) {
  auto error_of = [](const std::string& extra) -> std::string {
    try {
      make_tiny_model(extra);
    } catch (const ConfigError& error) {
      return error.what();
    }
    return "";
  };
  EXPECT_NE(error_of("first_stage: PIXELS cache { latents: true }").find("cache.latents: first_stage PIXELS"),
            std::string::npos);
  EXPECT_NE(error_of("cache { dir: \"somewhere\" }").find("cache.dir:"), std::string::npos);
  EXPECT_NE(error_of("cache { text_embeddings: true max_memory_mb: -1 }").find("cache.max_memory_mb: must be >= 0"),
            std::string::npos);
  EXPECT_NE(error_of("min_snr_gamma: 5 noise_scheduler { type: \"ddpm\" options { "
                     "[type.googleapis.com/sdtrain.DdpmSchedulerOptions] { schedule { rescale_betas_zero_snr: true } } } }")
                .find("min_snr_gamma: the noise_scheduler has zero terminal SNR"),
            std::string::npos);
  EXPECT_EQ(error_of("min_snr_gamma: 5 noise_scheduler { type: \"ddpm\" options { "
                     "[type.googleapis.com/sdtrain.DdpmSchedulerOptions] { schedule { rescale_betas_zero_snr: true "
                     "prediction_type: V_PREDICTION } } } }"),
            "");
  // PIXELS with a text cache is fine.
  EXPECT_EQ(error_of("first_stage: PIXELS cache { text_embeddings: true }"), "");
}

// The trainer hands the model's cache to its loader and the per-epoch line is logged; a second
// run with the same cache folder starts with every latent cached.
TEST(EncoderCache, TrainerRunsLogHitsAndMissesPerEpoch) {
  const fs::path dir = test::scratch_dir();
  make_folder(dir / "data", 4);
  auto comm = make_mpi_communicator(test::process_group().info(), 60.0);
  auto config_for = [&](const std::string& output) {
    const std::string text =
        "run { output_dir: \"" + output + "\" seed: 3 max_epochs: 2 val_every_n_epochs: 0 "
        "checkpoint_every_n_steps: 0 device: \"cpu\" }\n"
        "model { type: \"stable_diffusion\" options { [type.googleapis.com/sdtrain.StableDiffusionOptions] {\n" +
        std::string(kTinySd) + " cache { latents: true text_embeddings: true dir: \"cache\" } } } }\n"
        "data { train { type: \"image_folder\" options { [type.googleapis.com/sdtrain.ImageFolderOptions] {"
        " root: \"data\" } } } batch_size: 2 num_workers: 1 transforms { resolution: 32 random_flip: false } }\n"
        "lr_schedule { type: \"constant\" }\n";
    return load_train_config(test::write_text(dir / (output + ".pbtxt"), text), {});
  };
  const fs::path log = dir / "log.txt";
  LogCapture capture(log);
  {
    Trainer trainer(config_for("first"), test::process_group().info(), *comm);
    trainer.fit();
  }
  {
    Trainer trainer(config_for("second"), test::process_group().info(), *comm);
    trainer.fit();
  }
  const std::string text = capture.text();
  EXPECT_EQ(count_occurrences(text, "cache, epoch 0 (this rank): latents 0 hits, 4 misses (encoded and stored)"), 1)
      << text;
  EXPECT_EQ(count_occurrences(text, "cache, epoch 1 (this rank): latents 4 hits, 0 misses (encoded and stored)"), 2)
      << text;
  EXPECT_EQ(count_occurrences(text, "cache, epoch 0 (this rank): latents 4 hits, 0 misses (encoded and stored)"), 1)
      << text;
  EXPECT_NE(text.find("text embeddings 4 hits, 0 misses"), std::string::npos) << text;
}

// frozen_in_compute_dtype: a bf16 run holds the autoencoder and the text encoder in bf16 and runs
// them without autocast (diffusers' weight_dtype); the UNet stays float32 (its master weights), the
// loss is the autocast one's within bf16 rounding, and an fp32 run or the option off changes nothing.
TEST(FrozenInComputeDtype, Bf16RunHoldsTheFrozenPartsInBf16WithTheSameLoss) {
  const auto dtypes = [](StableDiffusionModel& model) {
    const SdNetworks& networks = model.networks();
    return std::vector<torch::ScalarType>{networks.unet->parameters().front().scalar_type(),
                                          networks.vae->parameters().front().scalar_type(),
                                          networks.text_encoder->parameters().front().scalar_type()};
  };
  auto low = make_tiny_model("", 3, ".", torch::kBFloat16);
  auto autocast_only = make_tiny_model("frozen_in_compute_dtype: false", 3, ".", torch::kBFloat16);
  auto fp32 = make_tiny_model("", 3, ".", torch::kFloat32);
  EXPECT_EQ(dtypes(*low), (std::vector<torch::ScalarType>{torch::kFloat32, torch::kBFloat16, torch::kBFloat16}));
  EXPECT_EQ(dtypes(*autocast_only), std::vector<torch::ScalarType>(3, torch::kFloat32));
  EXPECT_EQ(dtypes(*fp32), std::vector<torch::ScalarType>(3, torch::kFloat32));

  Batch batch;
  torch::manual_seed(7);
  batch.pixels = torch::rand({2, 3, 32, 32}) * 2 - 1;
  batch.seeds = {11, 12};
  batch.captions = {"a red square", "a blue square"};
  double losses[2];
  StableDiffusionModel* models[2] = {low.get(), autocast_only.get()};
  for (int i = 0; i < 2; ++i) {
    AutocastScope autocast(BF16, torch::Device(torch::kCPU));
    const torch::Tensor loss = models[i]->training_loss(batch);
    EXPECT_EQ(loss.scalar_type(), torch::kFloat32);
    losses[i] = loss.item<double>();
  }
  EXPECT_TRUE(std::isfinite(losses[0]));
  EXPECT_NEAR(losses[0], losses[1], 0.02 * std::abs(losses[1])) << "bf16 parts " << losses[0] << ", autocast "
                                                                 << losses[1];
  EXPECT_FALSE(at::autocast::is_autocast_enabled(at::kCPU)) << "the scopes restored autocast";
}

// unet.channels_last changes the order of the flat optimizer state (FlatParameters::layout()), so
// a resume across that change is refused, naming the shard and the setting.
TEST(ChannelsLastLayout, AResumeWithAnotherParameterLayoutIsRefusedByName) {
  const fs::path dir = test::scratch_dir();
  make_folder(dir / "data", 2);
  auto comm = make_mpi_communicator(test::process_group().info(), 60.0);
  auto config_for = [&](bool channels_last, int64_t steps, const std::string& resume) {
    std::string model = kTinySd;
    if (channels_last) model.replace(model.find("unet { "), 7, "unet { channels_last: true ");
    const std::string text =
        "run { output_dir: \"out\" seed: 3 max_steps: " + std::to_string(steps) +
        " val_every_n_epochs: 0 checkpoint_every_n_steps: 1 device: \"cpu\" resume: \"" + resume + "\" }\n"
        "model { type: \"stable_diffusion\" options { [type.googleapis.com/sdtrain.StableDiffusionOptions] {\n" +
        model + " } } }\n"
        "data { train { type: \"image_folder\" options { [type.googleapis.com/sdtrain.ImageFolderOptions] {"
        " root: \"data\" } } } batch_size: 2 num_workers: 1 transforms { resolution: 32 } }\n"
        "gradient_accumulation_steps: 1\n"
        "lr_schedule { type: \"constant\" }\n";
    return load_train_config(test::write_text(dir / "cfg.pbtxt", text), {});
  };
  {
    Trainer trainer(config_for(false, 1, ""), test::process_group().info(), *comm);
    trainer.fit();
  }
  try {
    Trainer trainer(config_for(true, 2, "auto"), test::process_group().info(), *comm);
    trainer.fit();
    FAIL() << "resumed a standard-layout optimizer state into channels-last parameters";
  } catch (const FormatError& error) {
    const std::string what = error.what();
    EXPECT_NE(what.find("optimizer-rank-00000-of-00001.safetensors: the optimizer state is ordered for standard "
                        "parameters, this run stores them channels-last"),
              std::string::npos)
        << what;
  }
  // The same setting resumes.
  Trainer trainer(config_for(false, 2, "auto"), test::process_group().info(), *comm);
  trainer.fit();
  EXPECT_EQ(trainer.progress().step, 2);
}

}  // namespace
}  // namespace sdtrain

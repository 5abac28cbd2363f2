// Images/s of training steps (data loader + training_loss + backward) of a small SD model with
// and without the encoder caches (SdCacheOptions: latents and text embeddings, in memory), on
// the recipe's kind of data: square images at half the resolution, resized up, randomly cropped
// (no choice: square) and flipped. The cached run is timed after the epochs that fill both flips
// of every image, which is the steady state of a long fine-tune; the uncached run is timed over
// the same number of steps. Prints both rates and their ratio.
//
//   build/bin/encoder_cache_bench [images=16] [resolution=128] [timed_epochs=2]
#include <google/protobuf/text_format.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <set>
#include <string>

#include <unistd.h>

#include "framework/data/data_loader.h"
#include "framework/data/image_codec.h"
#include "framework/registry/registry.h"
#include "plugins/builtin_plugins.h"
#include "plugins/datasets/datasets.pb.h"
#include "plugins/models/stable_diffusion/stable_diffusion_model.h"

namespace {
namespace fs = std::filesystem;
using namespace sdtrain;

// A small SD v1-shaped model: the layout of the full one with fewer channels and blocks.
const char* kSmallSd =
    "unet { in_channels: 4 out_channels: 4 block_out_channels: [64, 128, 128] layers_per_block: 1\n"
    "       cross_attention_dim: 128 attention_head_dim: 8 norm_num_groups: 32\n"
    "       down_block_types: [\"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"DownBlock2D\"]\n"
    "       up_block_types: [\"UpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\"] }\n"
    "vae { block_out_channels: [64, 128, 128, 128] layers_per_block: 1 }\n"
    "text_encoder { hidden_size: 128 intermediate_size: 512 num_hidden_layers: 4 num_attention_heads: 4 }\n";

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

fs::path make_folder(const fs::path& dir, int count, int size) {
  fs::create_directories(dir);
  std::ofstream csv(dir / "metadata.csv");
  csv << "file_name,text\n";
  for (int i = 0; i < count; ++i) {
    Image image;
    image.width = image.height = size;
    image.channels = 3;
    image.pixels.resize(static_cast<std::size_t>(size) * size * 3);
    for (std::size_t p = 0; p < image.pixels.size(); ++p) {
      image.pixels[p] = static_cast<uint8_t>((p * 2654435761u + static_cast<std::size_t>(i) * 97) >> 7);
    }
    const std::string name = "img" + std::to_string(i) + ".png";
    write_png_file((dir / name).string(), image);
    csv << name << ",a portrait number " << i % 4 << "\n";
  }
  return dir;
}

struct Run {
  std::unique_ptr<StableDiffusionModel> model;
  std::unique_ptr<DataLoader> loader;
};

Run make_run(const std::shared_ptr<const Dataset>& dataset, int resolution, bool cache) {
  StableDiffusionOptions options;
  google::protobuf::TextFormat::ParseFromString(
      std::string(kSmallSd) + (cache ? "cache { latents: true text_embeddings: true }" : ""), &options);
  torch::manual_seed(1);
  Run run;
  run.model = std::make_unique<StableDiffusionModel>(options, PluginContext{});
  DataLoaderOptions data;
  data.batch_size = 4;
  data.num_workers = 1;
  data.seed = 5;
  data.transforms.set_resolution(resolution);
  data.pixel_cache = run.model->pixel_cache();
  run.loader = std::make_unique<DataLoader>(dataset, data);
  return run;
}

/// Runs `epochs` epochs from `first`; returns images per second.
double train(Run& run, int64_t first, int64_t epochs) {
  int64_t images = 0;
  const double start = now_s();
  for (int64_t epoch = first; epoch < first + epochs; ++epoch) {
    run.loader->seek(epoch, 0);
    while (auto batch = run.loader->next()) {
      run.model->trainable_module().zero_grad();
      run.model->training_loss(*batch).backward();
      images += static_cast<int64_t>(batch->seeds.size());
    }
  }
  return static_cast<double>(images) / (now_s() - start);
}

}  // namespace

int main(int argc, char** argv) {
  const int images = argc > 1 ? std::stoi(argv[1]) : 16;
  const int resolution = argc > 2 ? std::stoi(argv[2]) : 128;
  const int timed_epochs = argc > 3 ? std::stoi(argv[3]) : 2;
  anchor_builtin_plugins();
  const fs::path dir = fs::temp_directory_path() / ("encoder_cache_bench_" + std::to_string(::getpid()));
  make_folder(dir, images, resolution / 2);
  ImageFolderOptions folder;
  folder.set_root(dir.string());
  PluginSpec spec;
  spec.set_type("image_folder");
  spec.mutable_options()->PackFrom(folder);
  std::shared_ptr<const Dataset> dataset = Registry<Dataset>::instance().create(spec, PluginContext{}, "data.train");

  Run cached = make_run(dataset, resolution, true);
  // Fill: epochs until both flips of every image are cached (the steady state of a long run).
  int64_t epoch = 0;
  for (; epoch < 50 && cached.model->cache_counts().latent_misses < 2 * images; ++epoch) train(cached, epoch, 1);
  const SdCacheCounts before = cached.model->cache_counts();
  const double cached_rate = train(cached, epoch, timed_epochs);
  const SdCacheCounts after = cached.model->cache_counts();

  Run plain = make_run(dataset, resolution, false);
  train(plain, 0, 1);  // warm-up, as the cached run had
  const double plain_rate = train(plain, epoch, timed_epochs);

  std::cout << std::fixed << std::setprecision(2) << "training steps, " << images << " images " << resolution / 2
            << " px -> " << resolution << " px, batch 4, " << timed_epochs << " timed epochs, "
            << at::get_num_threads() << " threads\n"
            << "  without cache: " << plain_rate << " images/s\n"
            << "  with cache:    " << cached_rate << " images/s (timed epochs: "
            << after.latent_hits - before.latent_hits << " latent hits, " << after.latent_misses - before.latent_misses
            << " misses; " << epoch << " fill epochs)\n"
            << "  ratio cached / uncached: " << cached_rate / plain_rate << "x\n";
  fs::remove_all(dir);
  return 0;
}

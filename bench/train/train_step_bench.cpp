// Times sdtrain's training step of the stable_diffusion model plugin, the step the trainer runs:
// VAE encode + posterior sample, CLIP text encode, noise and timesteps, UNet forward, MSE loss,
// backward, the flat AdamW update, zeroing the gradients. Prints
// "parameters unet=N vae=N text_encoder=N" (the Python side refuses to compare unequal networks),
// then one line per setting as it finishes:
//   result batch=B cached=0|1 gradient_checkpointing=0|1 step_ms=<mean ms per step>
//          [peak_memory_mb=<most MiB of tensors held at once, from the first warm-up step on; GPU only>]
//          [peak_rss_mb=<the process's peak resident set so far, construction included; CPU only>]
// bench/train/bench_train_step.py runs it side by side with a diffusers training step of the same
// networks and prints the ratio. Not a test.
//
//   train_step_bench [--config small|sd] [--latent 64] [--batch 1[,8...]] [--iters 3] [--warmup 1]
//                    [--threads N] [--device cpu|cuda] [--precision fp32|bf16]
//                    [--gradient-checkpointing[=0,1]] [--cached[=0,1]] [--lora RANK]
//
// Lists run every combination (cached outermost, then batch, then gradient checkpointing) with one
// set of networks per cache setting: the networks' construction, not the steps, is what a bench
// process spends most of its time on.
// --precision bf16: the forward pass under bf16 autocast, as the trainer runs precision BF16, and
// the frozen autoencoder and text encoder stored in bf16, as diffusers' train_text_to_image.py
// stores them (weight_dtype), so the uncached step's encoders compute in bf16 on both sides.
// --cached: the model's encoder caches on (cache { latents: true text_embeddings: true }); each
// step's batch comes as the data loader delivers it: samples found in the latent cache carry its
// moments and have no pixel row (so the timed steps copy no pixels to the device), the rest are
// encoded and stored. The warm-up steps fill the caches, so the timed steps skip the autoencoder
// and the text encoder as a run does once its images' flips are cached.
// --lora RANK: LoRA adapters of that rank (alpha = rank) on the UNet's attention projections
// (to_q, to_k, to_v, to_out.0: diffusers' train_text_to_image_lora.py targets) are trained instead
// of the UNet, which is frozen (held in bf16 with --precision bf16, as that script holds it); the
// parameters line then ends with lora=<adapter parameters>.
// "sd" is the full SD v1 UNet, autoencoder and text encoder; "small" the SD v1 layout at a
// quarter of the UNet's width and half the autoencoder's (bench/modules' "small"), with the full
// text encoder. Pixels live in pinned host memory on CUDA, as the data loader delivers them.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "framework/registry/registry.h"
#include "framework/train/adamw.h"
#include "framework/train/autocast.h"
#include "framework/train/device_memory.h"
#include "framework/train/flat_parameters.h"
#include "framework/util/strings.h"
#include "plugins/builtin_plugins.h"
#include "plugins/models/stable_diffusion/stable_diffusion.pb.h"
#include "plugins/models/stable_diffusion/stable_diffusion_model.h"
#include "sdtrain/model.h"

namespace {

int64_t parameter_count(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

struct Args {
  std::string config = "small";
  int latent = 64;
  std::vector<int> batches = {1};
  int iters = 3;
  int warmup = 1;
  int threads = 0;
  std::string device = "cpu";
  std::string precision = "fp32";
  std::vector<bool> gradient_checkpointing = {false};
  std::vector<bool> cached = {false};
  int lora_rank = 0;  ///< 0: the UNet is trained
};

/// "4,8" -> {4, 8}; every entry an integer > 0.
std::vector<int> positive_list(const std::string& key, const std::string& text) {
  std::vector<int> values;
  for (const std::string& part : sdtrain::split(text, ',')) {
    std::size_t used = 0;
    int value = 0;
    try {
      value = std::stoi(part, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != part.size() || value <= 0) {
      throw std::runtime_error(key + ": '" + text + "' is not a comma-separated list of integers > 0");
    }
    values.push_back(value);
  }
  return values;
}

/// "--flag" -> {true}; "--flag=0,1" -> {false, true}.
std::vector<bool> switch_list(const std::string& key, const std::string& text) {
  std::vector<bool> values;
  for (const std::string& part : sdtrain::split(text, ',')) {
    if (part != "0" && part != "1") throw std::runtime_error(key + ": '" + text + "' is not a list of 0 and 1");
    values.push_back(part == "1");
  }
  return values;
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const std::size_t equals = arg.find('=');
    const std::string key = arg.substr(0, equals);
    const bool has_value = equals != std::string::npos;
    auto next = [&]() -> std::string {
      if (has_value) return arg.substr(equals + 1);
      if (i + 1 >= argc) throw std::runtime_error("missing value for " + key);
      return argv[++i];
    };
    auto number = [&]() -> int {
      const std::string text = next();
      try {
        return std::stoi(text);
      } catch (const std::exception&) {
        throw std::runtime_error(key + ": '" + text + "' is not an integer");
      }
    };
    if (key == "--config") a.config = next();
    else if (key == "--latent") a.latent = number();
    else if (key == "--batch") a.batches = positive_list(key, next());
    else if (key == "--iters") a.iters = number();
    else if (key == "--warmup") a.warmup = number();
    else if (key == "--threads") a.threads = number();
    else if (key == "--device") a.device = next();
    else if (key == "--precision") a.precision = next();
    else if (key == "--gradient-checkpointing") a.gradient_checkpointing = switch_list(key, has_value ? next() : "1");
    else if (key == "--cached") a.cached = switch_list(key, has_value ? next() : "1");
    else if (key == "--lora") a.lora_rank = number();
    else throw std::runtime_error("unknown argument " + arg);
  }
  if (a.config != "small" && a.config != "sd") throw std::runtime_error("--config must be small or sd");
  if (a.latent <= 0 || a.iters <= 0 || a.warmup < 0) {
    throw std::runtime_error("--latent and --iters must be > 0, --warmup >= 0");
  }
  if (a.precision != "fp32" && a.precision != "bf16") throw std::runtime_error("--precision must be fp32 or bf16");
  if (a.lora_rank < 0) throw std::runtime_error("--lora must be >= 0 (0: train the UNet)");
  for (bool cached : a.cached) {
    if (cached && a.warmup < 1) throw std::runtime_error("--cached needs a warm-up step to fill the caches");
  }
  return a;
}

sdtrain::PluginSpec model_spec(const Args& args, bool cached) {
  sdtrain::StableDiffusionOptions options;  // SD v1 when the sizes are unset
  if (cached) {
    options.mutable_cache()->set_latents(true);
    options.mutable_cache()->set_text_embeddings(true);
  }
  if (args.lora_rank > 0) {
    sdtrain::LoraOptions& lora = *options.mutable_adapter()->mutable_lora();
    lora.set_rank(args.lora_rank);
    lora.set_alpha(static_cast<float>(args.lora_rank));
    for (const char* target : {"\\.to_q$", "\\.to_k$", "\\.to_v$", "\\.to_out\\.0$"}) lora.add_unet_targets(target);
  }
  if (args.config == "small") {
    for (int channels : {128, 256, 320, 320}) options.mutable_unet()->add_block_out_channels(channels);
    for (int channels : {64, 128, 128, 128}) options.mutable_vae()->add_block_out_channels(channels);
  }
  sdtrain::PluginSpec spec;
  spec.set_type("stable_diffusion");
  spec.mutable_options()->PackFrom(options);
  return spec;
}

/// The model on `device`; with bf16 the model itself stores its frozen encoders in bf16
/// (StableDiffusionOptions.frozen_in_compute_dtype, on by default; see the top).
std::unique_ptr<sdtrain::Model> make_model(const Args& args, bool cached, const sdtrain::PluginContext& context) {
  std::unique_ptr<sdtrain::Model> model =
      sdtrain::Registry<sdtrain::Model>::instance().create(model_spec(args, cached), context, "model");
  model->to(context.device);
  return model;
}

/// One batch as the training data loader delivers it (framework/data/data_loader.cpp): with a
/// pixel cache, the samples it holds come as Batch::cached and have no row in Batch::pixels.
sdtrain::Batch loader_batch(const torch::Tensor& pixels, const sdtrain::PixelCache* cache, std::uint64_t& seed) {
  sdtrain::Batch batch;
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < pixels.size(0); ++i) {
    batch.captions.push_back("a portrait of a man in armor, detailed, oil painting");
    batch.keys.push_back("image-" + std::to_string(i));
    batch.seeds.push_back(seed++);
    if (cache == nullptr) continue;
    // What the data loader reports for an image whose pixels depend only on the flip.
    sdtrain::PixelsOrigin origin;
    origin.source = batch.keys.back();
    origin.transform = "bench";
    origin.deterministic = true;
    batch.cached.push_back(cache->find(origin));
    batch.origins.push_back(origin);
    if (!batch.cached.back().defined()) rows.push_back(i);
  }
  if (cache == nullptr || static_cast<int64_t>(rows.size()) == pixels.size(0)) {
    batch.cached.clear();
    batch.pixels = pixels;
  } else {
    batch.pixels = pixels.index_select(0, torch::tensor(rows, torch::kInt64));
  }
  return batch;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  try {
    args = parse(argc, argv);
  } catch (const std::exception& error) {
    std::cerr << "train_step_bench: " << error.what() << "\n";
    return 2;
  }
  sdtrain::anchor_builtin_plugins();  // keeps the built-in plugins linked in
  if (args.threads > 0) torch::set_num_threads(args.threads);
  const torch::Device device(args.device);
  const sdtrain::Precision precision = args.precision == "bf16" ? sdtrain::BF16 : sdtrain::FP32;
  sdtrain::PluginContext context;  // the run's precision: the encoder caches key their entries by it
  context.device = device;
  context.compute_dtype = sdtrain::autocast_dtype(precision);
  std::printf("config=%s latent=%d threads=%d device=%s precision=%s\n", args.config.c_str(), args.latent,
              torch::get_num_threads(), args.device.c_str(), args.precision.c_str());

  bool printed_parameters = false;
  for (const bool cached : args.cached) {
    torch::manual_seed(0);
    std::unique_ptr<sdtrain::Model> model = make_model(args, cached, context);
    sdtrain::FlatParameters flat(model->trainable_module());
    sdtrain::FlatAdamW optimizer(flat.values(), sdtrain::OptimizerConfig());
    const auto& networks = dynamic_cast<const sdtrain::StableDiffusionModel&>(*model).networks();
    if (!printed_parameters) {
      std::printf("parameters unet=%lld vae=%lld text_encoder=%lld", static_cast<long long>(parameter_count(*networks.unet)),
                  static_cast<long long>(parameter_count(*networks.vae)),
                  static_cast<long long>(parameter_count(*networks.text_encoder)));
      if (args.lora_rank > 0) std::printf(" lora=%lld", static_cast<long long>(flat.numel()));
      std::printf("\n");
      printed_parameters = true;
    }
    const sdtrain::PixelCache* cache = cached ? model->pixel_cache().get() : nullptr;
    for (const int batch_size : args.batches) {
      const int side = args.latent * 8;
      torch::Tensor pixels = torch::rand({batch_size, 3, side, side}) * 2 - 1;
      if (device.is_cuda()) pixels = pixels.pin_memory();
      for (const bool checkpointing : args.gradient_checkpointing) {
        sdtrain::UNet2DConditionModel unet = networks.unet;
        unet->set_gradient_checkpointing(checkpointing);
        std::uint64_t seed = 1;
        auto step = [&] {
          const sdtrain::Batch batch = loader_batch(pixels, cache, seed);
          torch::Tensor loss;
          {
            sdtrain::AutocastScope autocast(precision, device);  // the forward pass only, as the trainer
            loss = model->training_loss(batch);
          }
          loss.backward();
          optimizer.step(flat.values(), flat.grads(), 1e-4);
          flat.zero_grad();
          if (device.is_cuda()) torch::cuda::synchronize();
        };
        sdtrain::reset_peak_device_memory(device);
        for (int i = 0; i < args.warmup; ++i) step();
        const auto start = std::chrono::steady_clock::now();
        for (int i = 0; i < args.iters; ++i) step();
        const double ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() / args.iters;
        std::printf("result batch=%d cached=%d gradient_checkpointing=%d step_ms=%.1f", batch_size, cached ? 1 : 0,
                    checkpointing ? 1 : 0, ms);
        const int64_t peak = sdtrain::peak_device_memory_bytes(device);
        if (peak >= 0) std::printf(" peak_memory_mb=%.1f", static_cast<double>(peak) / (1024.0 * 1024.0));
        if (!device.is_cuda()) {
          rusage usage{};
          getrusage(RUSAGE_SELF, &usage);
          std::printf(" peak_rss_mb=%.1f", static_cast<double>(usage.ru_maxrss) / 1024.0);  // ru_maxrss is in KiB
        }
        std::printf("\n");
        std::fflush(stdout);  // a setting's result survives a later one that fails or times out
      }
    }
  }
  return 0;
}

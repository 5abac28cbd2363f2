// Times sdtrain's training step of the stable_diffusion model plugin, the step the trainer runs:
// VAE encode + posterior sample, CLIP text encode, noise and timesteps, UNet forward, MSE loss,
// backward, the flat AdamW update, zeroing the gradients. Prints "step_ms <mean ms per step>",
// "parameters unet=N vae=N text_encoder=N" (the Python side refuses to compare unequal networks)
// and on a GPU "peak_memory_mb <most MiB of tensors held at once>". bench/train/bench_train_step.py
// runs it side by side with a diffusers training step of the same networks and prints the ratio.
// Not a test.
//
//   train_step_bench [--config small|sd] [--latent 64] [--batch 1] [--iters 3] [--warmup 1]
//                    [--threads N] [--device cpu|cuda] [--precision fp32|bf16]
//                    [--gradient-checkpointing] [--cached]
//
// --precision bf16: the forward pass under bf16 autocast, as the trainer runs precision BF16.
// --cached: the model's encoder caches on (cache { latents: true text_embeddings: true }); the
// warm-up steps fill them, so the timed steps skip the autoencoder and the text encoder as a
// run does once its images' flips are cached (the recipe's 256 px images resized to 512).
// "sd" is the full SD v1 UNet, autoencoder and text encoder; "small" the SD v1 layout at a
// quarter of the UNet's width and half the autoencoder's (bench/modules' "small"), with the full
// text encoder.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <stdexcept>
#include <string>

#include <torch/torch.h>

#include "framework/registry/registry.h"
#include "framework/train/adamw.h"
#include "framework/train/autocast.h"
#include "framework/train/device_memory.h"
#include "framework/train/flat_parameters.h"
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
  int batch = 1;
  int iters = 3;
  int warmup = 1;
  int threads = 0;
  std::string device = "cpu";
  std::string precision = "fp32";
  bool gradient_checkpointing = false;
  bool cached = false;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string key = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error("missing value for " + key);
      return argv[++i];
    };
    if (key == "--config") a.config = next();
    else if (key == "--latent") a.latent = std::stoi(next());
    else if (key == "--batch") a.batch = std::stoi(next());
    else if (key == "--iters") a.iters = std::stoi(next());
    else if (key == "--warmup") a.warmup = std::stoi(next());
    else if (key == "--threads") a.threads = std::stoi(next());
    else if (key == "--device") a.device = next();
    else if (key == "--precision") a.precision = next();
    else if (key == "--gradient-checkpointing") a.gradient_checkpointing = true;
    else if (key == "--cached") a.cached = true;
    else throw std::runtime_error("unknown argument " + key);
  }
  if (a.config != "small" && a.config != "sd") throw std::runtime_error("--config must be small or sd");
  if (a.latent <= 0 || a.batch <= 0 || a.iters <= 0 || a.warmup < 0) throw std::runtime_error("sizes must be > 0");
  if (a.precision != "fp32" && a.precision != "bf16") throw std::runtime_error("--precision must be fp32 or bf16");
  if (a.cached && a.warmup < 1) throw std::runtime_error("--cached needs a warm-up step to fill the caches");
  return a;
}

sdtrain::PluginSpec model_spec(const Args& args) {
  sdtrain::StableDiffusionOptions options;  // SD v1 when the sizes are unset
  options.mutable_unet()->set_gradient_checkpointing(args.gradient_checkpointing);
  if (args.cached) {
    options.mutable_cache()->set_latents(true);
    options.mutable_cache()->set_text_embeddings(true);
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

  torch::manual_seed(0);
  const sdtrain::Precision precision = args.precision == "bf16" ? sdtrain::BF16 : sdtrain::FP32;
  sdtrain::PluginContext context;  // the run's precision: the encoder caches key their entries by it
  context.device = device;
  context.compute_dtype = sdtrain::autocast_dtype(precision);
  std::unique_ptr<sdtrain::Model> model =
      sdtrain::Registry<sdtrain::Model>::instance().create(model_spec(args), context, "model");
  model->to(device);
  sdtrain::FlatParameters flat(model->trainable_module());
  sdtrain::FlatAdamW optimizer(flat.values(), sdtrain::OptimizerConfig());

  sdtrain::Batch batch;
  const int pixels = args.latent * 8;
  batch.pixels = torch::rand({args.batch, 3, pixels, pixels}) * 2 - 1;
  for (int i = 0; i < args.batch; ++i) {
    batch.captions.push_back("a portrait of a man in armor, detailed, oil painting");
    batch.keys.push_back("image-" + std::to_string(i));
    // What the data loader reports for an image whose pixels depend only on the flip.
    sdtrain::PixelsOrigin origin;
    origin.source = batch.keys.back();
    origin.transform = "bench";
    origin.deterministic = true;
    batch.origins.push_back(origin);
  }
  std::uint64_t seed = 1;
  auto step = [&] {
    batch.seeds.clear();
    for (int i = 0; i < args.batch; ++i) batch.seeds.push_back(seed++);
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
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() / args.iters;
  std::printf("config=%s latent=%d batch=%d threads=%d precision=%s gradient_checkpointing=%d cached=%d "
              "trained_parameters=%lld\n",
              args.config.c_str(), args.latent, args.batch, torch::get_num_threads(), args.precision.c_str(),
              args.gradient_checkpointing ? 1 : 0, args.cached ? 1 : 0, static_cast<long long>(flat.numel()));
  std::printf("step_ms %.1f\n", ms);
  const int64_t peak = sdtrain::peak_device_memory_bytes(device);
  if (peak >= 0) std::printf("peak_memory_mb %.1f\n", static_cast<double>(peak) / (1024.0 * 1024.0));
  const auto& networks = dynamic_cast<const sdtrain::StableDiffusionModel&>(*model).networks();
  std::printf("parameters unet=%lld vae=%lld text_encoder=%lld\n",
              static_cast<long long>(parameter_count(*networks.unet)),
              static_cast<long long>(parameter_count(*networks.vae)),
              static_cast<long long>(parameter_count(*networks.text_encoder)));
  return 0;
}

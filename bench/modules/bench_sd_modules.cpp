// Times the sdtrain UNet (forward + backward of an MSE loss) and VAE encode against diffusers with
// the same config, shapes and thread count in the same run, and prints the ratios
// (sdtrain / diffusers; < 1 is faster). Not a test.
//
//   bench_sd_modules [--config small|sd] [--latent 32] [--batch 1] [--iters 3] [--warmup 1]
//                    [--threads N] [--device cpu|cuda] [--no-python] [--only unet|vae]
//                    [--profile PREFIX]
//
// --profile writes one Chrome trace per timed part and side (PREFIX-sdtrain-vae.json, ...;
// the diffusers side writes PREFIX-diffusers-vae.json) for finding where a gap comes from.
// "sd" is the full SD v1 UNet / VAE; "small" is the SD v1 layout at reduced width (CPU-friendly).
#include <array>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include "bench_sd_modules_paths.h"
#include "plugins/models/stable_diffusion/modules/autoencoder_kl.h"
#include "plugins/models/stable_diffusion/modules/unet_2d_condition_model.h"

namespace {

struct Args {
  std::string config = "small";
  int latent = 32;
  int batch = 1;
  int iters = 3;
  int warmup = 1;
  int threads = 0;
  std::string device = "cpu";
  bool python = true;
  std::string only;     // "", "unet" or "vae"
  std::string profile;  // trace file prefix; empty: no profiling
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error("missing value for " + k);
      return argv[++i];
    };
    if (k == "--config") a.config = next();
    else if (k == "--latent") a.latent = std::stoi(next());
    else if (k == "--batch") a.batch = std::stoi(next());
    else if (k == "--iters") a.iters = std::stoi(next());
    else if (k == "--warmup") a.warmup = std::stoi(next());
    else if (k == "--threads") a.threads = std::stoi(next());
    else if (k == "--device") a.device = next();
    else if (k == "--no-python") a.python = false;
    else if (k == "--only") a.only = next();
    else if (k == "--profile") a.profile = next();
    else throw std::runtime_error("unknown argument " + k);
  }
  if (a.config != "small" && a.config != "sd") throw std::runtime_error("--config must be small or sd");
  if (!a.only.empty() && a.only != "unet" && a.only != "vae") throw std::runtime_error("--only must be unet or vae");
  return a;
}

sdtrain::UNet2DConditionConfig unet_config(const std::string& kind) {
  sdtrain::UNet2DConditionConfig c;  // SD v1 defaults
  if (kind == "small") {
    for (int ch : {128, 256, 320, 320}) c.add_block_out_channels(ch);
  }
  return c;
}

sdtrain::AutoencoderKLConfig vae_config(const std::string& kind) {
  sdtrain::AutoencoderKLConfig c;
  if (kind == "small") {
    for (int ch : {64, 128, 128, 128}) c.add_block_out_channels(ch);
  }
  return c;
}

// Times `fn` after `warmup` calls; with a non-empty `trace` the timed calls are also profiled
// (op-level Chrome trace written there), which adds a little overhead to the figure.
template <typename Fn>
double timed_ms(Fn&& fn, const Args& a, const torch::Device& device, const std::string& trace) {
  auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  for (int i = 0; i < a.warmup; ++i) fn();
  sync();
  std::unique_ptr<torch::autograd::profiler::RecordProfile> profiler;
  if (!trace.empty()) profiler = std::make_unique<torch::autograd::profiler::RecordProfile>(trace);
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < a.iters; ++i) fn();
  sync();
  const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / a.iters;
  profiler.reset();
  return ms;
}

int64_t parameter_count(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

std::string trace_path(const Args& a, const std::string& part) {
  return a.profile.empty() ? std::string() : a.profile + "-sdtrain-" + part + ".json";
}

std::map<std::string, double> run_python(const Args& a) {
  std::ostringstream cmd;
  cmd << "\"" << SDTRAIN_BENCH_PYTHON << "\" \"" << SDTRAIN_BENCH_SCRIPT << "\" --config " << a.config
      << " --latent " << a.latent << " --batch " << a.batch << " --iters " << a.iters << " --warmup "
      << a.warmup << " --threads " << a.threads << " --device " << a.device;
  if (!a.only.empty()) cmd << " --only " << a.only;
  if (!a.profile.empty()) cmd << " --profile \"" << a.profile << "\"";
  std::map<std::string, double> out;
  FILE* pipe = popen(cmd.str().c_str(), "r");
  if (!pipe) return out;
  std::array<char, 512> line{};
  while (fgets(line.data(), line.size(), pipe)) {
    std::istringstream is(line.data());
    std::string name;
    double ms = 0;
    if (is >> name >> ms) out[name] = ms;
  }
  pclose(pipe);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  try {
    a = parse(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "bench_sd_modules: " << e.what() << "\n";
    return 2;
  }
  if (a.threads > 0) torch::set_num_threads(a.threads);
  torch::Device device(a.device);
  std::map<std::string, double> ours;
  std::map<std::string, double> parameters;  // compared with the diffusers side's counts
  if (a.only != "vae") {
    torch::manual_seed(0);
    sdtrain::UNet2DConditionModel unet(unet_config(a.config));
    unet->to(device);
    unet->train();
    auto x = torch::randn({a.batch, 4, a.latent, a.latent}, device);
    auto t = torch::randint(0, 1000, {a.batch}, torch::TensorOptions(device).dtype(torch::kLong));
    auto ctx = torch::randn({a.batch, 77, 768}, device);
    auto target = torch::randn_like(x);
    ours["unet_fwd_bwd_ms"] = timed_ms(
        [&] {
          unet->zero_grad(/*set_to_none=*/true);
          torch::mse_loss(unet->forward(x, t, ctx), target).backward();
        },
        a, device, trace_path(a, "unet"));
    std::cout << "sdtrain  unet_fwd_bwd_ms " << ours["unet_fwd_bwd_ms"] << std::endl;
    parameters["unet_parameters"] = static_cast<double>(parameter_count(*unet));
  }
  if (a.only != "unet") {
    sdtrain::AutoencoderKL vae(vae_config(a.config));
    vae->to(device);
    vae->eval();
    auto images = torch::rand({a.batch, 3, a.latent * 8, a.latent * 8}, device) * 2 - 1;
    ours["vae_encode_ms"] = timed_ms(
        [&] {
          torch::NoGradGuard no_grad;
          vae->encode(images).sample();
        },
        a, device, trace_path(a, "vae"));
    std::cout << "sdtrain  vae_encode_ms " << ours["vae_encode_ms"] << std::endl;
    parameters["vae_parameters"] = static_cast<double>(parameter_count(*vae));
  }
  if (!a.python) return 0;
  auto ref = run_python(a);
  for (const auto& [name, count] : parameters) {
    // A ratio between different networks means nothing (diffusers' AutoencoderKL defaults to one
    // resnet per block where SD v1 has two; that once slipped into this comparison).
    if (ref.count(name) == 0 || ref.at(name) != count) {
      std::cerr << "bench_sd_modules: the two sides built different networks: " << name << " sdtrain " << count
                << ", diffusers " << (ref.count(name) ? std::to_string(static_cast<long long>(ref.at(name))) : "n/a")
                << "\n";
      return 1;
    }
  }
  std::cout << "config=" << a.config << " latent=" << a.latent << " batch=" << a.batch << " device=" << a.device
            << " threads=" << torch::get_num_threads() << "\n";
  for (const auto& [name, ms] : ours) {
    auto it = ref.find(name);
    if (it == ref.end()) {
      std::cout << name << ": sdtrain " << ms << " ms, diffusers n/a\n";
    } else {
      std::cout << name << ": sdtrain " << ms << " ms, diffusers " << it->second << " ms, ratio "
                << ms / it->second << "\n";
    }
  }
  return 0;
}

// Times the sdtrain UNet (forward + backward of an MSE loss) and VAE encode against diffusers with
// the same config, shapes and thread count in the same run, and prints the ratios
// (sdtrain / diffusers; < 1 is faster). Not a test.
//
//   bench_sd_modules [--config small|sd] [--latent 32] [--batch 1] [--iters 3] [--warmup 1]
//                    [--threads N] [--device cpu|cuda] [--no-python]
//
// "sd" is the full SD v1 UNet / VAE; "small" is the SD v1 layout at reduced width (CPU-friendly).
#include <array>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>
#include <string>

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
    else throw std::runtime_error("unknown argument " + k);
  }
  if (a.config != "small" && a.config != "sd") throw std::runtime_error("--config must be small or sd");
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

template <typename Fn>
double timed_ms(Fn&& fn, int warmup, int iters, const torch::Device& device) {
  auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  for (int i = 0; i < warmup; ++i) fn();
  sync();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) fn();
  sync();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / iters;
}

std::map<std::string, double> run_python(const Args& a) {
  std::ostringstream cmd;
  cmd << "\"" << SDTRAIN_BENCH_PYTHON << "\" \"" << SDTRAIN_BENCH_SCRIPT << "\" --config " << a.config
      << " --latent " << a.latent << " --batch " << a.batch << " --iters " << a.iters << " --warmup "
      << a.warmup << " --threads " << a.threads << " --device " << a.device;
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
  {
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
        a.warmup, a.iters, device);
    std::cout << "sdtrain  unet_fwd_bwd_ms " << ours["unet_fwd_bwd_ms"] << std::endl;
  }
  {
    sdtrain::AutoencoderKL vae(vae_config(a.config));
    vae->to(device);
    vae->eval();
    auto images = torch::rand({a.batch, 3, a.latent * 8, a.latent * 8}, device) * 2 - 1;
    ours["vae_encode_ms"] = timed_ms(
        [&] {
          torch::NoGradGuard no_grad;
          vae->encode(images).sample();
        },
        a.warmup, a.iters, device);
    std::cout << "sdtrain  vae_encode_ms " << ours["vae_encode_ms"] << std::endl;
  }
  if (!a.python) return 0;
  auto ref = run_python(a);
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

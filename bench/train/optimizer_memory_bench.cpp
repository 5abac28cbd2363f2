// Peak memory and time of one optimizer step over a flat parameter buffer (AdamW + the EMA
// update), and of the EMA swap used for validation, each as a multiple of the training state
// (weights, gradients, the two AdamW moments, the EMA shadow). Side by side in the same process:
//   reference: LibTorch's torch::optim::AdamW (the op-by-op arithmetic of torch.optim.AdamW with
//              foreach=False) and LDM's LitEma update, shadow -= (1 - d) * (shadow - w), with the
//              EMA swap as LitEma's store/copy_to (a clone of the weights);
//   sdtrain:   FlatAdamW (ATen's fused AdamW) and ExponentialMovingAverage (lerp_, and the swap
//              through one scratch chunk).
// On the CPU the peak is the process's peak resident set above the state (VmHWM, reset through
// /proc/self/clear_refs before each measurement); on CUDA the caching allocator's peak. Not a test.
//
//   optimizer_memory_bench [--millions 64] [--iters 3] [--device cpu|cuda]
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <stdexcept>
#include <string>

#include <torch/torch.h>

#include "framework/dist/device_choice.h"
#include "framework/train/adamw.h"
#include "framework/train/device_memory.h"
#include "framework/train/ema.h"

namespace {
using namespace sdtrain;

/// The process's resident set ("VmRSS") or its peak since the last reset ("VmHWM"), in bytes.
int64_t status_bytes(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1)) * 1024;
  }
  throw std::runtime_error("/proc/self/status has no " + field);
}

/// Peak bytes held while `work` runs, above what was held before it. On CUDA everything the
/// bench holds on the device is the state, `state_bytes`.
int64_t peak_above_now(const torch::Device& device, double state_bytes, const std::function<void()>& work) {
  if (device.is_cuda()) {
    reset_peak_device_memory(device);
    work();
    return peak_device_memory_bytes(device) - static_cast<int64_t>(state_bytes);
  }
  std::ofstream("/proc/self/clear_refs") << "5";  // VmHWM := VmRSS
  const int64_t held = status_bytes("VmRSS");
  work();
  return status_bytes("VmHWM") - held;
}

double seconds_of(const std::function<void()>& work) {
  const auto start = std::chrono::steady_clock::now();
  work();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

struct Figures {
  double step_peak_over_state = 0;
  double swap_peak_over_state = 0;
  double step_ms = 0;
};

void print(const char* side, const Figures& figures) {
  std::printf("%-9s step peak %.3f x state, EMA swap peak %.3f x state, step %.1f ms\n", side,
              figures.step_peak_over_state, figures.swap_peak_over_state, figures.step_ms);
}

}  // namespace

int main(int argc, char** argv) try {
  int64_t millions = 64;
  int iters = 3;
  std::string device_name = "cpu";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--millions") millions = std::stoll(argv[i + 1]);
    else if (flag == "--iters") iters = std::stoi(argv[i + 1]);
    else if (flag == "--device") device_name = argv[i + 1];
    else throw std::runtime_error("unknown argument " + flag);
  }
  const torch::Device device(device_name);
  if (device.is_cuda()) make_current_device(device);
  torch::NoGradGuard no_grad;
  const int64_t numel = millions * 1000 * 1000;
  const auto options = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  OptimizerConfig optimizer_config;
  EmaConfig ema_config;
  const double lr = 1e-4;
  const double decay = ema_config.decay();

  // State: weights, gradients, two moments, EMA shadow (each numel float32).
  const double state_bytes = 5.0 * static_cast<double>(numel) * 4.0;
  std::printf("buffer %lld float32 (%.0f MB), state %.0f MB, device %s\n", static_cast<long long>(numel),
              numel * 4.0 / 1e6, state_bytes / 1e6, device.str().c_str());

  Figures reference;
  {
    torch::Tensor parameter = torch::randn({numel}, options);
    torch::Tensor shadow = parameter.clone();
    parameter.mutable_grad() = torch::randn({numel}, options);
    torch::optim::AdamW adamw({parameter}, torch::optim::AdamWOptions(lr)
                                               .betas({optimizer_config.beta1(), optimizer_config.beta2()})
                                               .eps(optimizer_config.eps())
                                               .weight_decay(optimizer_config.weight_decay()));
    const auto reference_step = [&] {
      adamw.step();
      shadow.sub_((1.0 - decay) * (shadow - parameter));
    };
    reference_step();  // allocates the moments: part of the state, not of the step's peak
    reference.step_peak_over_state = 1.0 + peak_above_now(device, state_bytes, reference_step) / state_bytes;
    reference.step_ms = 1e3 * seconds_of([&] {
      for (int i = 0; i < iters; ++i) reference_step();
      if (device.is_cuda()) torch::cuda::synchronize();
    }) / iters;
    reference.swap_peak_over_state = 1.0 + peak_above_now(device, state_bytes, [&] {
      torch::Tensor stored = parameter.clone();  // LitEma.store + copy_to + restore
      parameter.copy_(shadow);
      parameter.copy_(stored);
    }) / state_bytes;
  }
  print("reference", reference);

  Figures fused;
  {
    torch::Tensor values = torch::randn({numel}, options);
    torch::Tensor grads = torch::randn({numel}, options);
    FlatAdamW adamw(values, optimizer_config);
    ExponentialMovingAverage ema(values, ema_config);
    const auto step = [&] {
      adamw.step(values, grads, lr);
      ema.update(values);
    };
    step();
    fused.step_peak_over_state = 1.0 + peak_above_now(device, state_bytes, step) / state_bytes;
    fused.step_ms = 1e3 * seconds_of([&] {
      for (int i = 0; i < iters; ++i) step();
      if (device.is_cuda()) torch::cuda::synchronize();
    }) / iters;
    fused.swap_peak_over_state = 1.0 + peak_above_now(device, state_bytes, [&] {
      ema.swap_in(values);
      ema.swap_out(values);
    }) / state_bytes;
  }
  print("sdtrain", fused);
  std::printf("peak of a step: reference / sdtrain %.2fx; step time: reference / sdtrain %.2fx\n",
              reference.step_peak_over_state / fused.step_peak_over_state, reference.step_ms / fused.step_ms);
  return 0;
} catch (const std::exception& error) {
  std::cerr << "optimizer_memory_bench: " << error.what() << "\n";
  return 1;
}

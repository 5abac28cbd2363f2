#include "framework/dist/device_choice.h"

#include <ATen/Context.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/cuda.h>

#include "sdtrain/errors.h"

namespace sdtrain {

torch::Device pick_device(const std::string& wanted, int local_rank) {
  if (wanted == "cpu") return torch::Device(torch::kCPU);
  if (wanted == "auto" && !torch::cuda::is_available()) return torch::Device(torch::kCPU);
  if (!torch::cuda::is_available()) {
    throw ConfigError("run.device: '" + wanted + "' asked for CUDA, but no CUDA device is available");
  }
  if (wanted == "auto" || wanted == "cuda") {
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank % torch::cuda::device_count()));
  }
  return torch::Device(wanted);
}

void make_current_device(const torch::Device& device) {
  if (!device.is_cuda()) return;
  // The device-generic form of c10::cuda::set_device: the same call, and it compiles against the
  // CPU wheel's headers too.
  c10::impl::getDeviceGuardImpl(device.type())->setDevice(device);
}

void apply_cuda_math_settings(const torch::Device& device, bool allow_tf32, bool cudnn_benchmark) {
  if (!device.is_cuda()) return;
  at::globalContext().setAllowTF32CuBLAS(allow_tf32);
  at::globalContext().setAllowTF32CuDNN(allow_tf32);
  at::globalContext().setBenchmarkCuDNN(cudnn_benchmark);
}

}  // namespace sdtrain

#include "framework/dist/device_choice.h"

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

}  // namespace sdtrain

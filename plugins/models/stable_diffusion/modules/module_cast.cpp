#include "plugins/models/stable_diffusion/modules/module_cast.h"

#include <ATen/autocast_mode.h>

namespace sdtrain {

void cast_floating(torch::nn::Module& module, const torch::Device& device, torch::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  for (auto& tensor : module.parameters()) {
    tensor.set_data(tensor.is_floating_point() ? tensor.to(device, dtype) : tensor.to(device));
  }
  for (auto& tensor : module.buffers()) {
    tensor.set_data(tensor.is_floating_point() ? tensor.to(device, dtype) : tensor.to(device));
  }
}

torch::ScalarType floating_dtype(torch::nn::Module& module) {
  for (const auto& tensor : module.parameters()) {
    if (tensor.is_floating_point()) return tensor.scalar_type();
  }
  return torch::kFloat32;
}

AutocastDisabled::AutocastDisabled(c10::DeviceType device_type)
    : device_type_(device_type), was_enabled_(at::autocast::is_autocast_enabled(device_type)) {
  at::autocast::set_autocast_enabled(device_type_, false);
}

AutocastDisabled::~AutocastDisabled() { at::autocast::set_autocast_enabled(device_type_, was_enabled_); }

}  // namespace sdtrain

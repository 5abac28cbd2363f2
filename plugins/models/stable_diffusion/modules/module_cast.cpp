#include "plugins/models/stable_diffusion/modules/module_cast.h"

#include <ATen/autocast_mode.h>

#include <vector>

namespace sdtrain {

void cast_floating(torch::nn::Module& module, const torch::Device& device, torch::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> tensors = module.parameters();
  const std::vector<torch::Tensor> buffers = module.buffers();
  tensors.insert(tensors.end(), buffers.begin(), buffers.end());
  for (auto& tensor : tensors) {
    tensor.set_data(tensor.is_floating_point() ? tensor.to(device, dtype) : tensor.to(device));
  }
}

void cast_matmul_layers(torch::nn::Module& module, torch::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  for (const auto& layer : module.modules()) {
    if (dynamic_cast<torch::nn::LinearImpl*>(layer.get()) == nullptr &&
        dynamic_cast<torch::nn::Conv2dImpl*>(layer.get()) == nullptr) {
      continue;
    }
    for (auto& parameter : layer->parameters(/*recurse=*/false)) parameter.set_data(parameter.to(dtype));
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

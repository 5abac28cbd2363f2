#pragma once
/// Moving a network's tensors to a device and floating-point type, and running a part with
/// autocast off.
#include <torch/torch.h>

namespace sdtrain {

/// Moves every parameter and buffer of `module` to `device`, casting the floating-point ones to
/// `dtype` (Module::to(device, dtype) would cast integer buffers, such as CLIP's position ids,
/// too). Tensors keep their identity (set_data), so holders and views of the module stay valid.
void cast_floating(torch::nn::Module& module, const torch::Device& device, torch::ScalarType dtype);

/// Casts the parameters of every Linear and Conv2d layer of `module` (weights and biases: nearly
/// all of a UNet's memory) to `dtype` on their device, and leaves the rest (norms) as they are.
/// For a frozen network run under autocast: autocast lowers exactly these layers' ops, while on
/// the CPU it runs GroupNorm/LayerNorm without casting, whose kernels need float32 parameters.
void cast_matmul_layers(torch::nn::Module& module, torch::ScalarType dtype);

/// The floating-point type of `module`'s first parameter (float32 for a module without any).
torch::ScalarType floating_dtype(torch::nn::Module& module);

/// Autocast off for `device_type` during the scope and restored after it, as Python's
/// `with torch.autocast(device_type, enabled=False)`: a part held in fp16/bf16 runs in that type
/// as it is, instead of autocast's per-op casts.
class AutocastDisabled {
 public:
  explicit AutocastDisabled(c10::DeviceType device_type);
  ~AutocastDisabled();
  AutocastDisabled(const AutocastDisabled&) = delete;
  AutocastDisabled& operator=(const AutocastDisabled&) = delete;

 private:
  c10::DeviceType device_type_;
  bool was_enabled_;
};

}  // namespace sdtrain

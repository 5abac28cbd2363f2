#include "plugins/models/stable_diffusion/modules/adaptable_layers.h"

namespace sdtrain {

torch::Tensor AdapterSlot::with_adapter(const torch::Tensor& input, torch::Tensor output) const {
  if (!adapter_) return output;
  const torch::Tensor delta = adapter_->delta(input);
  if (!delta.defined()) return output;  // the adapter skipped this forward (module dropout)
  return output + delta.to(output.scalar_type());
}

std::vector<torch::Tensor> attached_adapter_parameters(const torch::nn::Module& module) {
  std::vector<torch::Tensor> parameters;
  for (const auto& child : module.modules(/*include_self=*/true)) {
    const auto* slot = dynamic_cast<const AdapterSlot*>(child.get());
    if (slot == nullptr || !slot->adapter()) continue;
    for (const auto& p : slot->adapter()->adapter_parameters()) parameters.push_back(p);
  }
  return parameters;
}

}  // namespace sdtrain

// merge_lora: an adapter baked into the base weights.
#include "framework/util/strings.h"
#include "plugins/models/stable_diffusion/weights/sd_lora_format.h"
#include "plugins/models/stable_diffusion/weights/sd_lora_modules.h"
#include "sdtrain/errors.h"

namespace sdtrain {

void merge_lora(SdNetworks& networks, const LoraFile& lora, double multiplier,
                const std::map<std::string, LoraTarget>& targets) {
  // Every module is checked before any weight changes.
  const auto modules = lora_modules(lora, targets, "adapter");
  std::map<std::string, torch::OrderedDict<std::string, torch::Tensor>> parameters;
  if (!networks.unet.is_empty()) parameters["unet"] = networks.unet->named_parameters();
  if (!networks.text_encoder.is_empty()) parameters["text_encoder"] = networks.text_encoder->named_parameters();
  if (!networks.text_encoder_2.is_empty()) parameters["text_encoder_2"] = networks.text_encoder_2->named_parameters();
  std::vector<std::pair<torch::Tensor, const LoraModule*>> weights;
  for (const auto& [name, module] : modules) {
    const LoraTarget& target = *module.target;
    const auto component = parameters.find(target.component);
    const torch::Tensor* weight =
        component == parameters.end() ? nullptr : component->second.find(target.module_path + ".weight");
    // The targets were listed from other networks than these: a caller's mistake, not the file's.
    if (weight == nullptr || weight->sizes().vec() != target.weight_shape) {
      throw std::logic_error("merge_lora: the networks have no " + target.component + " weight " +
                             target.module_path + ".weight of shape " + shape_text(target.weight_shape) +
                             " (the targets come from other networks)");
    }
    weights.emplace_back(*weight, &module);
  }
  torch::NoGradGuard no_grad;
  for (auto& [weight, module] : weights) {
    const int64_t out = weight.size(0);
    const auto device = weight.device();
    const torch::Tensor down = module->down.to(device, torch::kFloat32).reshape({module->rank, -1});
    const torch::Tensor up = module->up.to(device, torch::kFloat32).reshape({out, module->rank});
    // (up · down) · scale, then added: the order of peft's get_delta_weight and merge, with the
    // scale as peft forms it (alpha / r, times the fuse scale).
    const double scale = module->alpha / static_cast<double>(module->rank) * multiplier;
    const torch::Tensor delta = up.mm(down).mul_(scale).reshape(weight.sizes());
    if (weight.scalar_type() == torch::kFloat32) {
      weight.add_(delta);
    } else {
      weight.copy_(weight.to(torch::kFloat32).add_(delta));
    }
  }
}

}  // namespace sdtrain

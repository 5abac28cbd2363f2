#include "tools/sdconvert/adapter_networks.h"

#include <algorithm>

#include "framework/util/strings.h"
#include "plugins/models/stable_diffusion/modules/state_dict_loader.h"
#include "plugins/models/stable_diffusion/weights/sd_component_configs.h"
#include "plugins/models/stable_diffusion/weights/sd_diffusers_config.h"
#include "plugins/models/stable_diffusion/weights/sd_weights.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

std::string config_json(const SdWeights& weights, const std::string& component,
                        std::string (*infer)(const NamedTensors&), const NamedTensors& tensors) {
  const auto found = weights.configs.find(component);
  return found != weights.configs.end() ? found->second : infer(tensors);
}

void freeze(torch::nn::Module& module) {
  for (auto& parameter : module.parameters()) parameter.set_requires_grad(false);
  module.eval();
}

void store_changed(const torch::nn::Module& module, NamedTensors& tensors) {
  torch::NoGradGuard no_grad;
  for (const auto& item : module.named_parameters()) {
    const auto it = tensors.find(item.key());
    if (it == tensors.end()) continue;
    const torch::Tensor original = it->second;
    // Compared in the module's float32: a weight no adapter touched equals its float32 copy.
    if (torch::equal(item.value(), original.to(item.value().scalar_type()).reshape(item.value().sizes()))) continue;
    it->second = item.value().to(original.scalar_type()).reshape(original.sizes()).contiguous();
  }
}

}  // namespace

SdNetworks adapter_networks(SdWeights& weights, const std::string& source) {
  SdNetworks networks;
  networks.unet = UNet2DConditionModel(unet_config_from_json(
      config_json(weights, "unet", infer_unet_config_json, weights.unet), source + " (unet config)"));
  networks.text_encoder = ClipTextModel(clip_config_from_json(
      config_json(weights, "text_encoder", infer_clip_config_json, weights.text_encoder), source + " (text_encoder config)"));
  load_component_exactly(*networks.unet, weights.unet, "unet", source);
  load_component_exactly(*networks.text_encoder, weights.text_encoder, "text_encoder", source);
  freeze(*networks.unet);
  freeze(*networks.text_encoder);
  return networks;
}

SdNetworks sd_v1_adapter_networks() {
  torch::NoGradGuard no_grad;
  SdNetworks networks;
  networks.unet = UNet2DConditionModel(UNet2DConditionConfig{});
  networks.text_encoder = ClipTextModel(ClipTextConfig{});
  return networks;
}

void store_changed_weights(const SdNetworks& networks, SdWeights& weights) {
  store_changed(*networks.unet, weights.unet);
  store_changed(*networks.text_encoder, weights.text_encoder);
}

}  // namespace sdtrain

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
  const auto config_source = [&](const std::string& component) {
    return source + " (" + component + (weights.configs.count(component) ? " config)" : " config inferred from the weights)");
  };
  networks.unet = UNet2DConditionModel(unet_config_from_json(component_config_json(weights, "unet"), config_source("unet")));
  networks.text_encoder = ClipTextModel(
      clip_config_from_json(component_config_json(weights, "text_encoder"), config_source("text_encoder")));
  load_component_exactly(*networks.unet, weights.unet, "unet", source);
  load_component_exactly(*networks.text_encoder, weights.text_encoder, "text_encoder", source);
  freeze(*networks.unet);
  freeze(*networks.text_encoder);
  if (weights.is_sdxl()) {
    networks.text_encoder_2 = ClipTextModel(
        clip_config_from_json(component_config_json(weights, "text_encoder_2"), config_source("text_encoder_2")));
    load_component_exactly(*networks.text_encoder_2, weights.text_encoder_2, "text_encoder_2", source);
    freeze(*networks.text_encoder_2);
  }
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
  if (networks.text_encoder_2) store_changed(*networks.text_encoder_2, weights.text_encoder_2);
}

}  // namespace sdtrain

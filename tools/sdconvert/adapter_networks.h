#pragma once
/// The networks sdconvert needs for adapters: the UNet and text encoder(s) of a loaded model (to
/// merge adapters into and to list their targets), or SD v1's architecture when no model is given
/// (to resolve kohya names, whose '_' hides the module paths' dots, when writing PEFT files).
#include <string>

#include "plugins/models/stable_diffusion/txt2img.h"
#include "plugins/models/stable_diffusion/weights/sd_weights.h"

namespace sdtrain {

/// The UNet and text encoder (SDXL: both) built with the sizes of `weights.configs` (inferred from
/// the tensor shapes when absent) and holding `weights`' tensors (copied, float32). No VAE or tokenizer.
/// FormatError naming `source` when a weight is missing or of another shape.
SdNetworks adapter_networks(SdWeights& weights, const std::string& source);

/// SD v1's UNet and text encoder (the default module configs), randomly initialised: their
/// module names and weight shapes are all an adapter file is checked against.
SdNetworks sd_v1_adapter_networks();

/// Replaces each UNet and text-encoder(s) weight in `weights` whose value in `networks` differs
/// with the network's, cast to the dtype it had, so merging leaves every other tensor as read.
void store_changed_weights(const SdNetworks& networks, SdWeights& weights);

}  // namespace sdtrain

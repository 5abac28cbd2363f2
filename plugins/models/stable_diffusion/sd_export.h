#pragma once
/// The weights and diffusers configs of a constructed stable_diffusion model, ready for
/// save_sd_weights (its export_pretrained). The configs describe the model as its options built
/// it, so settings that no tensor shape reveals (attention heads, norm groups, sample size, the
/// VAE scaling factor, CLIP's activation) are exported as trained, not as SD v1 guesses.
#include <map>
#include <string>

#include "plugins/models/stable_diffusion/stable_diffusion.pb.h"
#include "plugins/models/stable_diffusion/txt2img.h"
#include "plugins/models/stable_diffusion/weights/sd_weights.h"

namespace sdtrain {

/// Every parameter and buffer of the UNet, the autoencoder (must exist) and the text encoder on
/// the CPU (dtypes as held), keyed by their diffusers names: the module's own tensors where they
/// are CPU and contiguous (no copy: writing them out must not hold the model twice), copies
/// otherwise. They may therefore share storage with the networks: write them, do not modify them. `source_configs` are the
/// config.json texts of the weights the model was loaded from (may be empty): kept as the base
/// of each component's config, with the option-defined fields set from `options`; components
/// without one start from the shape-inferred config. `tokenizer_dir` / `tokenizer_2_dir` (may be
/// empty) are the tokenizer folders to ship. SDXL's second text encoder (networks.text_encoder_2)
/// is exported beside the first, with its config.
SdWeights weights_for_export(const SdNetworks& networks, const StableDiffusionOptions& options,
                             const std::map<std::string, std::string>& source_configs,
                             const std::string& tokenizer_dir, const std::string& tokenizer_2_dir = "");

}  // namespace sdtrain

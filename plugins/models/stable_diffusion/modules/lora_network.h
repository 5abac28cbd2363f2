#pragma once
/// The set of LoRA / LoCon adapters of a Stable Diffusion model (kohya's LoRANetwork): it picks
/// the layers to wrap in the UNet and, optionally, the text encoder(s) by module-path patterns,
/// creates one LoraModule per layer, attaches it to the layer (adaptable_layers.h) and owns it.
/// Its parameters are the adapters' only, named in kohya's layout for the model's family
/// (lora_targets: "lora_unet_<path with '_'>.lora_down.weight", "lora_te_<...>.lora_up.weight";
/// SDXL "lora_unet_input_blocks_...", "lora_te1_...", "lora_te2_..."), so the trained state is the
/// adapter file itself, and the base networks' parameters and keys do not change.
#include <string>
#include <vector>

#include <torch/torch.h>

#include "plugins/models/stable_diffusion/modules/lora_module.h"
#include "plugins/models/stable_diffusion/stable_diffusion.pb.h"
#include "plugins/models/stable_diffusion/txt2img.h"
#include "plugins/models/stable_diffusion/weights/sd_lora_format.h"

namespace sdtrain {

/// One wrapped layer.
struct LoraLayer {
  std::string name;         ///< the target's name (lora_targets), the adapter's module name here
  std::string component;    ///< "unet", "text_encoder" or "text_encoder_2"
  std::string module_path;  ///< the layer's path in its component (diffusers / transformers names)
  bool conv = false;        ///< a Conv2d layer (else Linear)
  LoraModule adapter{nullptr};
};

class LoraNetworkImpl : public torch::nn::Module {
 public:
  /// Wraps the layers `options` selects in `networks.unet`, and with options.text_encoder in the
  /// text encoder and, for SDXL, the second one as well (text_encoder_targets apply to both, as
  /// kohya's train_text_encoder trains both; a pattern must match in one of them). Throws
  /// ConfigError naming the field: rank or conv_rank out of range, a dropout outside [0, 1), a
  /// pattern that is not a regular expression, a pattern that matches no layer (with the layer
  /// paths closest to it), or no layer wrapped at all.
  LoraNetworkImpl(const LoraOptions& options, const SdNetworks& networks);
  /// Detaches the adapters: the networks compute as their base again.
  ~LoraNetworkImpl() override { detach(); }
  /// Detaches every adapter from its layer (they stay in this network, untouched).
  void detach();
  /// Whether some adapter is still attached to its layer (false after detach()).
  bool is_attached() const;

  const std::vector<LoraLayer>& layers() const { return layers_; }
  /// A summary: counts per component, ranks and alphas, and one line per wrapped layer.
  std::string describe() const;

 private:
  /// The networks of one field (the UNet; the text encoders) and their names.
  struct Part {
    std::string component;
    torch::nn::Module* root;
  };
  void wrap(const LoraOptions& options, const std::vector<Part>& parts,
            const google::protobuf::RepeatedPtrField<std::string>& patterns, const std::string& field,
            const LoraNameIndex& names);

  std::vector<LoraLayer> layers_;
  std::vector<std::weak_ptr<AdapterSlot>> slots_;  ///< where each adapter is attached
};
TORCH_MODULE(LoraNetwork);

}  // namespace sdtrain

#pragma once
/// The set of LoRA / LoCon adapters of a Stable Diffusion model (kohya's LoRANetwork): it picks
/// the layers to wrap in the UNet and, optionally, the text encoder by module-path patterns,
/// creates one LoraModule per layer, attaches it to the layer (adaptable_layers.h) and owns it.
/// Its parameters are the adapters' only, named in kohya's layout,
/// "lora_unet_<path with '_'>.lora_down.weight" / "lora_te_<...>.lora_up.weight", so the trained
/// state is the adapter file itself, and the base networks' parameters and keys do not change.
#include <string>
#include <vector>

#include <torch/torch.h>

#include "plugins/models/stable_diffusion/modules/lora_module.h"
#include "plugins/models/stable_diffusion/stable_diffusion.pb.h"

namespace sdtrain {

/// One wrapped layer.
struct LoraLayer {
  std::string name;         ///< kohya_lora_name (sd_lora_format.h), the adapter's module name here
  std::string component;    ///< "unet" or "text_encoder"
  std::string module_path;  ///< the layer's path in its component (diffusers / transformers names)
  bool conv = false;        ///< a Conv2d layer (else Linear)
  LoraModule adapter{nullptr};
};

class LoraNetworkImpl : public torch::nn::Module {
 public:
  /// Wraps the layers `options` selects in `unet`, and in `text_encoder` when options.text_encoder
  /// (it may be null otherwise). Throws ConfigError naming the field: rank or conv_rank out of
  /// range, a dropout outside [0, 1), a pattern that is not a regular expression, a pattern that
  /// matches no layer (with the layer paths closest to it), or no layer wrapped at all.
  LoraNetworkImpl(const LoraOptions& options, torch::nn::Module& unet, torch::nn::Module* text_encoder);
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
  void wrap(const LoraOptions& options, const std::string& component, torch::nn::Module& root,
            const google::protobuf::RepeatedPtrField<std::string>& patterns, const std::string& field);

  std::vector<LoraLayer> layers_;
  std::vector<std::weak_ptr<AdapterSlot>> slots_;  ///< where each adapter is attached
};
TORCH_MODULE(LoraNetwork);

}  // namespace sdtrain

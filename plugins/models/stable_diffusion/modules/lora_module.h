#pragma once
/// One LoRA / LoCon adapter for one Linear or Conv2d layer, as kohya's networks/lora.py
/// LoRAModule: delta(x) = up(down(x)) * multiplier * alpha / rank, where for a Linear layer
/// down = Linear(in -> rank) and up = Linear(rank -> out), and for a Conv2d layer down is a
/// convolution with the layer's kernel, stride and padding into `rank` channels and up a 1x1
/// convolution (LoCon). Neither has a bias. Initialisation as kohya's (and Microsoft's loralib):
/// down Kaiming-uniform with a = sqrt(5) (LibTorch's default for these layers, drawn from the
/// global generator), up zero, so an adapted network starts equal to its base.
/// Keys: lora_down.weight [rank, in(, kh, kw)], lora_up.weight [out, rank(, 1, 1)] and the
/// buffer `alpha` (0-d float32), kohya's names.
#include <vector>

#include <torch/torch.h>

#include "plugins/models/stable_diffusion/modules/adaptable_layers.h"

namespace sdtrain {

struct LoraModuleOptions {
  int64_t rank = 4;        ///< > 0
  double alpha = 1.0;      ///< the delta is scaled by alpha / rank; 0 means alpha = rank (kohya)
  /// kohya's dropouts, active in training mode only (drawn from the default generators of the
  /// input's device and of the CPU): `dropout` zeroes single down-projection outputs (rescaled),
  /// `rank_dropout` whole ranks per sample (the delta rescaled by 1 / (1 - p)), `module_dropout`
  /// skips the whole adapter for a forward with that probability. Each in [0, 1).
  double dropout = 0.0;
  double rank_dropout = 0.0;
  double module_dropout = 0.0;
};

class LoraModuleImpl : public torch::nn::Module, public LayerAdapter {
 public:
  /// An adapter for a Linear layer with `base`'s features.
  LoraModuleImpl(const torch::nn::LinearOptions& base, const LoraModuleOptions& options);
  /// An adapter for a Conv2d layer with `base`'s channels, kernel, stride and padding (groups 1).
  LoraModuleImpl(const torch::nn::detail::ConvNdOptions<2>& base, const LoraModuleOptions& options);

  /// up(down(input)) * multiplier * scale, computed in the adapter's dtype (the input is cast to
  /// it, as peft does); undefined when module dropout skips the adapter for this forward.
  torch::Tensor delta(const torch::Tensor& input) override;
  std::vector<torch::Tensor> adapter_parameters() const override { return parameters(); }

  int64_t rank() const { return options_.rank; }
  /// alpha / rank.
  double scale() const { return scale_; }
  /// Multiplies the delta (1 in training; a sampling strength).
  void set_multiplier(double multiplier) { multiplier_ = multiplier; }
  bool is_conv() const { return static_cast<bool>(down_conv_); }

 private:
  void check_options() const;

  LoraModuleOptions options_;
  double scale_ = 1.0;
  double multiplier_ = 1.0;
  torch::nn::Linear down_linear_{nullptr}, up_linear_{nullptr};
  torch::nn::Conv2d down_conv_{nullptr}, up_conv_{nullptr};
};
TORCH_MODULE(LoraModule);

}  // namespace sdtrain

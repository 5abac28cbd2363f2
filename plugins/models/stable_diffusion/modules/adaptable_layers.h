#pragma once
/// Linear and Conv2d layers that an adapter (LoRA, LoCon) can be attached to without changing the
/// layer's parameters or their names: the network's state dict, loading and export stay those of
/// the plain layer, and the adapter's own parameters live in the adapter network that owns it
/// (lora_network.h). This is the C++ form of what kohya's networks/lora.py does by replacing a
/// layer's forward: output = layer(input) + adapter.delta(input).
#include <memory>
#include <vector>

#include <torch/torch.h>

namespace sdtrain {

/// What an adapter adds to the output of the layer it is attached to.
class LayerAdapter {
 public:
  virtual ~LayerAdapter() = default;
  /// The adapter's contribution for the layer's `input`, shaped as the layer's output; its dtype
  /// may differ (the layer casts it to its output's). Undefined: nothing this time.
  virtual torch::Tensor delta(const torch::Tensor& input) = 0;
  /// The parameters delta() uses that may require grad (gradient checkpointing, which recomputes
  /// a block in backward, must differentiate them too).
  virtual std::vector<torch::Tensor> adapter_parameters() const = 0;
};

/// The adapter slot shared by the adaptable layers. Empty by default: the layer is its plain self.
class AdapterSlot {
 public:
  virtual ~AdapterSlot() = default;
  /// Attaches `adapter` (replacing any attached one); null detaches.
  void set_adapter(std::shared_ptr<LayerAdapter> adapter) { adapter_ = std::move(adapter); }
  const std::shared_ptr<LayerAdapter>& adapter() const { return adapter_; }

 protected:
  /// `output` plus the adapter's delta for `input` (cast to output's dtype), or `output`.
  torch::Tensor with_adapter(const torch::Tensor& input, torch::Tensor output) const;

 private:
  std::shared_ptr<LayerAdapter> adapter_;
};

/// torch::nn::Linear with an adapter slot (same options, parameters and keys).
class AdaptableLinearImpl : public torch::nn::LinearImpl, public AdapterSlot {
 public:
  using torch::nn::LinearImpl::LinearImpl;
  torch::Tensor forward(const torch::Tensor& input) { return with_adapter(input, LinearImpl::forward(input)); }
};
TORCH_MODULE(AdaptableLinear);

/// torch::nn::Conv2d with an adapter slot (same options, parameters and keys).
class AdaptableConv2dImpl : public torch::nn::Conv2dImpl, public AdapterSlot {
 public:
  using torch::nn::Conv2dImpl::Conv2dImpl;
  torch::Tensor forward(const torch::Tensor& input) { return with_adapter(input, Conv2dImpl::forward(input)); }
};
TORCH_MODULE(AdaptableConv2d);

/// The parameters of every adapter attached to a layer inside `module` (itself included).
std::vector<torch::Tensor> attached_adapter_parameters(const torch::nn::Module& module);

}  // namespace sdtrain

#pragma once
/// transformers CLIPEncoderLayer (pre-LayerNorm): x + attn(ln1(x)), then + mlp(ln2(.)), with
/// the MLP fc1 -> quick_gelu (or gelu) -> fc2.
/// Keys: self_attn.*, layer_norm1, mlp.fc1, mlp.fc2, layer_norm2.
#include <string>

#include <torch/torch.h>

#include "plugins/models/stable_diffusion/modules/adaptable_layers.h"

#include "plugins/models/stable_diffusion/modules/clip_attention.h"

namespace sdtrain {

/// transformers CLIPMLP. Keys: fc1, fc2.
class ClipMlpImpl : public torch::nn::Module {
 public:
  /// `activation`: "quick_gelu" (x * sigmoid(1.702 x)) or "gelu" (exact erf form).
  ClipMlpImpl(int64_t hidden_size, int64_t intermediate_size, std::string activation);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  bool quick_gelu_;
  AdaptableLinear fc1_{nullptr}, fc2_{nullptr};
};
TORCH_MODULE(ClipMlp);

class ClipEncoderLayerImpl : public torch::nn::Module {
 public:
  ClipEncoderLayerImpl(int64_t hidden_size, int64_t intermediate_size, int64_t heads,
                       double layer_norm_eps, const std::string& activation);
  /// x [B, L, hidden] -> [B, L, hidden]; key_mask as ClipAttention.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& key_mask = {});

 private:
  ClipAttention self_attn_{nullptr};
  torch::nn::LayerNorm layer_norm1_{nullptr}, layer_norm2_{nullptr};
  ClipMlp mlp_{nullptr};
};
TORCH_MODULE(ClipEncoderLayer);

}  // namespace sdtrain

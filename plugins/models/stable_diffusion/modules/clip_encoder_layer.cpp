#include "plugins/models/stable_diffusion/modules/clip_encoder_layer.h"

namespace sdtrain {

ClipMlpImpl::ClipMlpImpl(int64_t hidden_size, int64_t intermediate_size, std::string activation)
    : quick_gelu_(activation == "quick_gelu") {
  TORCH_CHECK(activation == "quick_gelu" || activation == "gelu", "ClipMlp: unknown activation ", activation);
  fc1_ = register_module("fc1", AdaptableLinear(hidden_size, intermediate_size));
  fc2_ = register_module("fc2", AdaptableLinear(intermediate_size, hidden_size));
}

torch::Tensor ClipMlpImpl::forward(const torch::Tensor& x) {
  auto h = fc1_(x);
  h = quick_gelu_ ? h * torch::sigmoid(1.702 * h) : torch::gelu(h);
  return fc2_(h);
}

ClipEncoderLayerImpl::ClipEncoderLayerImpl(int64_t hidden_size, int64_t intermediate_size, int64_t heads,
                                           double layer_norm_eps, const std::string& activation) {
  namespace nn = torch::nn;
  self_attn_ = register_module("self_attn", ClipAttention(hidden_size, heads));
  layer_norm1_ = register_module("layer_norm1", nn::LayerNorm(nn::LayerNormOptions({hidden_size}).eps(layer_norm_eps)));
  mlp_ = register_module("mlp", ClipMlp(hidden_size, intermediate_size, activation));
  layer_norm2_ = register_module("layer_norm2", nn::LayerNorm(nn::LayerNormOptions({hidden_size}).eps(layer_norm_eps)));
}

torch::Tensor ClipEncoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& key_mask) {
  auto h = x + self_attn_(layer_norm1_(x), key_mask);
  return h + mlp_(layer_norm2_(h));
}

}  // namespace sdtrain

#pragma once
/// transformers CLIPAttention: multi-head self-attention with biased q/k/v/out projections and
/// scale head_dim^-0.5, computed by at::scaled_dot_product_attention.
/// Keys: q_proj, k_proj, v_proj, out_proj.
#include <torch/torch.h>

#include "plugins/models/stable_diffusion/modules/adaptable_layers.h"

namespace sdtrain {

class ClipAttentionImpl : public torch::nn::Module {
 public:
  ClipAttentionImpl(int64_t hidden_size, int64_t heads);
  /// x [B, L, hidden]; causal masking always; `key_mask` [B, L] (1 = attend, 0 = padding) or
  /// undefined. -> [B, L, hidden].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& key_mask = {});

 private:
  int64_t heads_;
  AdaptableLinear q_proj_{nullptr}, k_proj_{nullptr}, v_proj_{nullptr}, out_proj_{nullptr};
};
TORCH_MODULE(ClipAttention);

}  // namespace sdtrain

#pragma once
/// diffusers BasicTransformerBlock as SD v1 uses it: pre-LayerNorm self-attention, cross-
/// attention on the text states, GEGLU feed-forward, each with a residual.
/// Keys: norm1, attn1, norm2, attn2, norm3, ff.
#include <torch/torch.h>

#include "plugins/models/stable_diffusion/modules/attention.h"
#include "plugins/models/stable_diffusion/modules/feed_forward.h"

namespace sdtrain {

class BasicTransformerBlockImpl : public torch::nn::Module {
 public:
  /// `upcast_attention`: both attentions' scores in float32 (AttentionOptions::upcast).
  BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t dim_head, int64_t cross_attention_dim,
                            bool upcast_attention = false);
  /// x [B, L, dim], context [B, S, cross_attention_dim] -> [B, L, dim].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context);

 private:
  torch::nn::LayerNorm norm1_{nullptr}, norm2_{nullptr}, norm3_{nullptr};
  Attention attn1_{nullptr}, attn2_{nullptr};
  FeedForward ff_{nullptr};
};
TORCH_MODULE(BasicTransformerBlock);

}  // namespace sdtrain

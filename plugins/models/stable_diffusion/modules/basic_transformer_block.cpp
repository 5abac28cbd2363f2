#include "plugins/models/stable_diffusion/modules/basic_transformer_block.h"

namespace sdtrain {

BasicTransformerBlockImpl::BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t dim_head,
                                                     int64_t cross_attention_dim, bool upcast_attention) {
  namespace nn = torch::nn;
  auto ln = [dim] { return nn::LayerNorm(nn::LayerNormOptions({dim}).eps(1e-5)); };
  AttentionOptions self_attn;
  self_attn.query_dim = dim;
  self_attn.heads = heads;
  self_attn.dim_head = dim_head;
  self_attn.upcast = upcast_attention;
  AttentionOptions cross_attn = self_attn;
  cross_attn.cross_attention_dim = cross_attention_dim;
  norm1_ = register_module("norm1", ln());
  attn1_ = register_module("attn1", Attention(self_attn));
  norm2_ = register_module("norm2", ln());
  attn2_ = register_module("attn2", Attention(cross_attn));
  norm3_ = register_module("norm3", ln());
  ff_ = register_module("ff", FeedForward(dim));
}

torch::Tensor BasicTransformerBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
  auto h = attn1_(norm1_(x)) + x;
  h = attn2_(norm2_(h), context) + h;
  return ff_(norm3_(h)) + h;
}

}  // namespace sdtrain

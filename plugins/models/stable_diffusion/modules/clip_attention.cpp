#include "plugins/models/stable_diffusion/modules/clip_attention.h"

#include "plugins/models/stable_diffusion/modules/attention.h"

namespace sdtrain {

ClipAttentionImpl::ClipAttentionImpl(int64_t hidden_size, int64_t heads) : heads_(heads) {
  q_proj_ = register_module("q_proj", AdaptableLinear(hidden_size, hidden_size));
  k_proj_ = register_module("k_proj", AdaptableLinear(hidden_size, hidden_size));
  v_proj_ = register_module("v_proj", AdaptableLinear(hidden_size, hidden_size));
  out_proj_ = register_module("out_proj", AdaptableLinear(hidden_size, hidden_size));
}

torch::Tensor ClipAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& key_mask) {
  auto q = split_heads(q_proj_(x), heads_);
  auto k = split_heads(k_proj_(x), heads_);
  auto v = split_heads(v_proj_(x), heads_);
  torch::Tensor out;
  if (key_mask.defined()) {
    const int64_t len = x.size(1);
    auto causal = torch::ones({len, len}, x.options().dtype(torch::kBool)).tril();
    auto mask = causal.view({1, 1, len, len}) & key_mask.to(torch::kBool).view({x.size(0), 1, 1, len});
    out = at::scaled_dot_product_attention(q, k, v, mask);
  } else {
    out = at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/std::nullopt, /*dropout_p=*/0.0,
                                           /*is_causal=*/true);
  }
  return out_proj_(merge_heads(out));
}

}  // namespace sdtrain

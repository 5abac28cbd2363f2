#include "plugins/models/stable_diffusion/modules/attention.h"

#include <c10/core/impl/LocalDispatchKeySet.h>

namespace sdtrain {

torch::Tensor split_heads(const torch::Tensor& x, int64_t heads) {
  const auto b = x.size(0), l = x.size(1);
  return x.view({b, l, heads, x.size(2) / heads}).transpose(1, 2);
}

torch::Tensor merge_heads(const torch::Tensor& x) {
  const auto b = x.size(0), h = x.size(1), l = x.size(2), d = x.size(3);
  return x.transpose(1, 2).reshape({b, l, h * d});
}

AttentionImpl::AttentionImpl(const AttentionOptions& options) : options_(options) {
  namespace nn = torch::nn;
  const int64_t inner = options.heads * options.dim_head;
  const int64_t kv_dim = options.cross_attention_dim > 0 ? options.cross_attention_dim : options.query_dim;
  if (options.norm_num_groups > 0) {
    group_norm_ = register_module(
        "group_norm",
        nn::GroupNorm(nn::GroupNormOptions(options.norm_num_groups, options.query_dim).eps(options.norm_eps)));
  }
  to_q_ = register_module("to_q", AdaptableLinear(nn::LinearOptions(options.query_dim, inner).bias(options.qkv_bias)));
  to_k_ = register_module("to_k", AdaptableLinear(nn::LinearOptions(kv_dim, inner).bias(options.qkv_bias)));
  to_v_ = register_module("to_v", AdaptableLinear(nn::LinearOptions(kv_dim, inner).bias(options.qkv_bias)));
  to_out0_ = AdaptableLinear(nn::LinearOptions(inner, options.query_dim).bias(true));
  to_out_ = register_module("to_out", nn::ModuleList(to_out0_, nn::Dropout(0.0)));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& hidden,
                                     const torch::Tensor& encoder_hidden_states) {
  const bool spatial = hidden.dim() == 4;
  torch::Tensor x = hidden;
  int64_t b = 0, c = 0, height = 0, width = 0;
  if (spatial) {
    b = hidden.size(0), c = hidden.size(1), height = hidden.size(2), width = hidden.size(3);
    x = hidden.view({b, c, height * width}).transpose(1, 2);
  }
  if (group_norm_) x = group_norm_(x.transpose(1, 2)).transpose(1, 2);
  const auto& context = encoder_hidden_states.defined() ? encoder_hidden_states : x;
  auto q = split_heads(to_q_(x), options_.heads);
  auto k = split_heads(to_k_(context), options_.heads);
  auto v = split_heads(to_v_(context), options_.heads);
  torch::Tensor out;
  if (options_.upcast && (q.scalar_type() == torch::kHalf || q.scalar_type() == torch::kBFloat16)) {
    // Autocast would lower the float32 copies again; this one op stays out of it.
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    out = at::scaled_dot_product_attention(q.to(torch::kFloat32), k.to(torch::kFloat32), v.to(torch::kFloat32));
  } else {
    out = at::scaled_dot_product_attention(q, k, v);
  }
  out = to_out0_(merge_heads(out).to(q.scalar_type()));
  if (spatial) out = out.transpose(-1, -2).reshape({b, c, height, width});
  if (options_.residual_connection) out = out + hidden;
  if (options_.rescale_output_factor != 1.0) out = out / options_.rescale_output_factor;
  return out;
}

}  // namespace sdtrain

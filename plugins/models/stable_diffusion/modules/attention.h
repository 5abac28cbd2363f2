#pragma once
/// diffusers Attention with AttnProcessor2_0: multi-head (cross-)attention computed by
/// at::scaled_dot_product_attention (flash / memory-efficient kernels on GPU). Optionally the
/// VAE form: GroupNorm over channels first, 4-D input, residual connection and output rescale.
/// Keys: group_norm.* (optional), to_q, to_k, to_v, to_out.0 (to_out.1 is dropout).
#include <torch/torch.h>

#include "plugins/models/stable_diffusion/modules/adaptable_layers.h"

namespace sdtrain {

struct AttentionOptions {
  int64_t query_dim = 0;
  /// Width of the key/value source; 0 = self-attention (keys from the query input).
  int64_t cross_attention_dim = 0;
  int64_t heads = 8;
  int64_t dim_head = 64;
  bool qkv_bias = false;         ///< bias of to_q/to_k/to_v (UNet false, VAE true)
  int64_t norm_num_groups = 0;   ///< > 0: GroupNorm on the input (VAE mid-block attention)
  double norm_eps = 1e-5;        ///< that GroupNorm's epsilon
  bool residual_connection = false;
  double rescale_output_factor = 1.0;
  /// Scores and softmax in float32 when q/k/v are bf16/fp16 (diffusers' upcast_attention), with
  /// autocast off for that op; the result is cast back to q's precision before to_out.
  bool upcast = false;
};

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const AttentionOptions& options);
  /// hidden [B, L, query_dim] or [B, C, H, W] (then attended over H*W positions and returned
  /// in the same shape); encoder_hidden_states [B, S, cross_attention_dim] or undefined for
  /// self-attention. Returns the input's shape.
  torch::Tensor forward(const torch::Tensor& hidden, const torch::Tensor& encoder_hidden_states = {});

 private:
  AttentionOptions options_;
  torch::nn::GroupNorm group_norm_{nullptr};
  AdaptableLinear to_q_{nullptr}, to_k_{nullptr}, to_v_{nullptr}, to_out0_{nullptr};
  torch::nn::ModuleList to_out_{nullptr};
};
TORCH_MODULE(Attention);

/// Splits [B, L, H*D] into [B, H, L, D].
torch::Tensor split_heads(const torch::Tensor& x, int64_t heads);
/// Merges [B, H, L, D] into [B, L, H*D].
torch::Tensor merge_heads(const torch::Tensor& x);

}  // namespace sdtrain

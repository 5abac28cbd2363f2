#pragma once
/// diffusers Transformer2DModel (continuous input): GroupNorm (eps 1e-6) -> proj_in (1x1 conv,
/// or Linear with use_linear_projection) -> BasicTransformerBlocks over the H*W positions ->
/// proj_out -> + input. Keys: norm, proj_in, transformer_blocks.N, proj_out.
#include <torch/torch.h>

#include "plugins/models/stable_diffusion/modules/adaptable_layers.h"

#include "plugins/models/stable_diffusion/modules/basic_transformer_block.h"

namespace sdtrain {

struct Transformer2DOptions {
  int64_t in_channels = 0;
  int64_t heads = 8;
  int64_t dim_head = 40;           ///< inner dim = heads * dim_head
  int64_t cross_attention_dim = 768;
  int64_t norm_num_groups = 32;
  int64_t num_layers = 1;
  bool use_linear_projection = false;
  bool upcast_attention = false;   ///< attention scores in float32 under bf16/fp16
};

/// `settings` (heads, cross_attention_dim, num_layers, use_linear_projection, upcast_attention) for
/// a block of `channels` channels and `groups` GroupNorm groups: in_channels = channels, dim_head =
/// channels / heads, norm_num_groups = groups.
Transformer2DOptions transformer_options_for_block(const Transformer2DOptions& settings, int64_t channels,
                                                   int64_t groups);

class Transformer2DModelImpl : public torch::nn::Module {
 public:
  explicit Transformer2DModelImpl(const Transformer2DOptions& options);
  /// x [B, C, H, W], context [B, S, cross_attention_dim] -> [B, C, H, W].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context);

 private:
  Transformer2DOptions options_;
  torch::nn::GroupNorm norm_{nullptr};
  AdaptableConv2d proj_in_conv_{nullptr}, proj_out_conv_{nullptr};
  AdaptableLinear proj_in_linear_{nullptr}, proj_out_linear_{nullptr};
  torch::nn::ModuleList blocks_{nullptr};
};
TORCH_MODULE(Transformer2DModel);

}  // namespace sdtrain

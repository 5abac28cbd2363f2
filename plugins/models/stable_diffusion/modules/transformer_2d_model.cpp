#include "plugins/models/stable_diffusion/modules/transformer_2d_model.h"

namespace sdtrain {

Transformer2DOptions transformer_options_for_block(const Transformer2DOptions& settings, int64_t channels,
                                                   int64_t groups) {
  Transformer2DOptions t = settings;
  t.in_channels = channels;
  t.dim_head = channels / settings.heads;
  t.norm_num_groups = groups;
  return t;
}

Transformer2DModelImpl::Transformer2DModelImpl(const Transformer2DOptions& options) : options_(options) {
  namespace nn = torch::nn;
  const int64_t inner = options.heads * options.dim_head;
  norm_ = register_module(
      "norm", nn::GroupNorm(nn::GroupNormOptions(options.norm_num_groups, options.in_channels).eps(1e-6)));
  if (options.use_linear_projection) {
    proj_in_linear_ = register_module("proj_in", AdaptableLinear(options.in_channels, inner));
  } else {
    proj_in_conv_ = register_module("proj_in", AdaptableConv2d(nn::Conv2dOptions(options.in_channels, inner, 1)));
  }
  blocks_ = register_module("transformer_blocks", nn::ModuleList());
  for (int64_t i = 0; i < options.num_layers; ++i) {
    blocks_->push_back(
        BasicTransformerBlock(inner, options.heads, options.dim_head, options.cross_attention_dim,
                              options.upcast_attention));
  }
  if (options.use_linear_projection) {
    proj_out_linear_ = register_module("proj_out", AdaptableLinear(inner, options.in_channels));
  } else {
    proj_out_conv_ = register_module("proj_out", AdaptableConv2d(nn::Conv2dOptions(inner, options.in_channels, 1)));
  }
}

torch::Tensor Transformer2DModelImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
  const auto b = x.size(0), height = x.size(2), width = x.size(3);
  auto h = norm_(x);
  int64_t inner = 0;
  if (options_.use_linear_projection) {
    inner = h.size(1);
    h = h.permute({0, 2, 3, 1}).reshape({b, height * width, inner});
    h = proj_in_linear_(h);
  } else {
    h = proj_in_conv_(h);
    inner = h.size(1);
    h = h.permute({0, 2, 3, 1}).reshape({b, height * width, inner});
  }
  for (const auto& block : *blocks_) h = block->as<BasicTransformerBlock>()->forward(h, context);
  if (options_.use_linear_projection) {
    h = proj_out_linear_(h);
    h = h.reshape({b, height, width, -1}).permute({0, 3, 1, 2}).contiguous(x.suggest_memory_format());
  } else {
    h = h.reshape({b, height, width, inner}).permute({0, 3, 1, 2}).contiguous(x.suggest_memory_format());
    h = proj_out_conv_(h);
  }
  return h + x;
}

}  // namespace sdtrain

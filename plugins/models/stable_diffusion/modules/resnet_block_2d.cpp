#include "plugins/models/stable_diffusion/modules/resnet_block_2d.h"

namespace sdtrain {

ResnetBlock2DImpl::ResnetBlock2DImpl(const ResnetBlock2DOptions& options) : options_(options) {
  namespace nn = torch::nn;
  norm1_ = register_module(
      "norm1", nn::GroupNorm(nn::GroupNormOptions(options.groups, options.in_channels).eps(options.eps)));
  conv1_ = register_module(
      "conv1", AdaptableConv2d(nn::Conv2dOptions(options.in_channels, options.out_channels, 3).padding(1)));
  if (options.temb_channels > 0) {
    time_emb_proj_ =
        register_module("time_emb_proj", AdaptableLinear(options.temb_channels, options.out_channels));
  }
  norm2_ = register_module(
      "norm2", nn::GroupNorm(nn::GroupNormOptions(options.groups, options.out_channels).eps(options.eps)));
  conv2_ = register_module(
      "conv2", AdaptableConv2d(nn::Conv2dOptions(options.out_channels, options.out_channels, 3).padding(1)));
  if (options.in_channels != options.out_channels) {
    conv_shortcut_ = register_module(
        "conv_shortcut", AdaptableConv2d(nn::Conv2dOptions(options.in_channels, options.out_channels, 1)));
  }
}

torch::Tensor ResnetBlock2DImpl::forward(const torch::Tensor& x, const torch::Tensor& temb) {
  auto h = conv1_(torch::silu(norm1_(x)));
  if (time_emb_proj_) {
    TORCH_CHECK(temb.defined(), "ResnetBlock2D: time embedding required");
    h = h + time_emb_proj_(torch::silu(temb)).unsqueeze(-1).unsqueeze(-1);
  }
  h = conv2_(torch::silu(norm2_(h)));
  auto shortcut = conv_shortcut_ ? conv_shortcut_(x.contiguous(x.suggest_memory_format())) : x;
  auto out = shortcut + h;
  if (options_.output_scale_factor != 1.0) out = out / options_.output_scale_factor;
  return out;
}

}  // namespace sdtrain

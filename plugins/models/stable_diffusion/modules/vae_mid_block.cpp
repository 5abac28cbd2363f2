#include "plugins/models/stable_diffusion/modules/vae_mid_block.h"

namespace sdtrain {

VaeMidBlockImpl::VaeMidBlockImpl(int64_t channels, int64_t groups) {
  ResnetBlock2DOptions r;
  r.in_channels = channels;
  r.out_channels = channels;
  r.groups = groups;
  r.eps = 1e-6;
  resnet0_ = ResnetBlock2D(r);
  resnet1_ = ResnetBlock2D(r);
  AttentionOptions a;
  a.query_dim = channels;
  a.heads = 1;
  a.dim_head = channels;
  a.qkv_bias = true;
  a.norm_num_groups = groups;
  a.norm_eps = 1e-6;
  a.residual_connection = true;
  attention_ = Attention(a);
  register_module("resnets", torch::nn::ModuleList(resnet0_, resnet1_));
  register_module("attentions", torch::nn::ModuleList(attention_));
}

torch::Tensor VaeMidBlockImpl::forward(const torch::Tensor& x) {
  return resnet1_(attention_(resnet0_(x)));
}

}  // namespace sdtrain

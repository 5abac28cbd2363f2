#include "plugins/models/stable_diffusion/modules/vae_up_block.h"

namespace sdtrain {

VaeUpBlockImpl::VaeUpBlockImpl(int64_t in_channels, int64_t out_channels, int64_t num_layers,
                               int64_t groups, bool add_upsample) {
  auto resnets = register_module("resnets", torch::nn::ModuleList());
  for (int64_t i = 0; i < num_layers; ++i) {
    ResnetBlock2DOptions r;
    r.in_channels = i == 0 ? in_channels : out_channels;
    r.out_channels = out_channels;
    r.groups = groups;
    r.eps = 1e-6;
    resnets_.emplace_back(r);
    resnets->push_back(resnets_.back());
  }
  if (add_upsample) {
    upsampler_ = Upsample2D(out_channels, out_channels);
    register_module("upsamplers", torch::nn::ModuleList(upsampler_));
  }
}

torch::Tensor VaeUpBlockImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = x;
  for (auto& r : resnets_) h = r->forward(h);
  if (upsampler_) h = upsampler_(h);
  return h;
}

}  // namespace sdtrain

#include "plugins/models/stable_diffusion/modules/unet_mid_block.h"

#include "plugins/models/stable_diffusion/modules/activation_checkpoint.h"

namespace sdtrain {

UNetMidBlockImpl::UNetMidBlockImpl(const UNetMidBlockOptions& options) {
  auto resnets = register_module("resnets", torch::nn::ModuleList());
  auto attentions = register_module("attentions", torch::nn::ModuleList());
  ResnetBlock2DOptions r;
  r.in_channels = options.channels;
  r.out_channels = options.channels;
  r.temb_channels = options.temb_channels;
  r.groups = options.groups;
  r.eps = options.eps;
  r.output_scale_factor = options.output_scale_factor;
  const Transformer2DOptions t =
      transformer_options_for_block(options.transformer, options.channels, options.groups);
  resnets_.emplace_back(r);
  resnets->push_back(resnets_.back());
  for (int64_t i = 0; i < options.num_layers; ++i) {
    attentions_.emplace_back(t);
    attentions->push_back(attentions_.back());
    resnets_.emplace_back(r);
    resnets->push_back(resnets_.back());
  }
}

torch::Tensor UNetMidBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& temb,
                                        const torch::Tensor& context) {
  const bool ckpt = should_checkpoint(checkpointing_, *this);
  auto run_resnet = [&](ResnetBlock2D& resnet, const torch::Tensor& h) {
    if (!ckpt) return resnet->forward(h, temb);
    return checkpoint([resnet](const std::vector<torch::Tensor>& in) mutable { return resnet->forward(in[0], in[1]); },
                      {h, temb}, *resnet);
  };
  auto h = run_resnet(resnets_[0], x);
  for (size_t i = 0; i < attentions_.size(); ++i) {
    auto& attn = attentions_[i];
    if (ckpt) {
      h = checkpoint([attn](const std::vector<torch::Tensor>& in) mutable { return attn->forward(in[0], in[1]); },
                     {h, context}, *attn);
    } else {
      h = attn->forward(h, context);
    }
    h = run_resnet(resnets_[i + 1], h);
  }
  return h;
}

}  // namespace sdtrain

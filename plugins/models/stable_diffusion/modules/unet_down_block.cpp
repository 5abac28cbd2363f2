#include "plugins/models/stable_diffusion/modules/unet_down_block.h"

#include "plugins/models/stable_diffusion/modules/activation_checkpoint.h"

namespace sdtrain {

UNetDownBlockImpl::UNetDownBlockImpl(const UNetDownBlockOptions& options) : options_(options) {
  auto resnets = register_module("resnets", torch::nn::ModuleList());
  torch::nn::ModuleList attentions{nullptr};
  if (options.cross_attention) attentions = register_module("attentions", torch::nn::ModuleList());
  for (int64_t i = 0; i < options.num_layers; ++i) {
    ResnetBlock2DOptions r;
    r.in_channels = i == 0 ? options.in_channels : options.out_channels;
    r.out_channels = options.out_channels;
    r.temb_channels = options.temb_channels;
    r.groups = options.groups;
    r.eps = options.eps;
    resnets_.emplace_back(r);
    resnets->push_back(resnets_.back());
    if (options.cross_attention) {
      attentions_.emplace_back(transformer_options_for_block(options.transformer, options.out_channels, options.groups));
      attentions->push_back(attentions_.back());
    }
  }
  if (options.add_downsample) {
    downsampler_ = Downsample2D(options.out_channels, options.out_channels, options.downsample_padding);
    register_module("downsamplers", torch::nn::ModuleList(downsampler_));
  }
}

DownBlockOutput UNetDownBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& temb,
                                           const torch::Tensor& context) {
  DownBlockOutput out;
  torch::Tensor h = x;
  for (size_t i = 0; i < resnets_.size(); ++i) {
    auto& resnet = resnets_[i];
    if (should_checkpoint(checkpointing_, *this)) {
      h = checkpoint([resnet](const std::vector<torch::Tensor>& in) mutable { return resnet->forward(in[0], in[1]); },
                     {h, temb}, *resnet);
    } else {
      h = resnet->forward(h, temb);
    }
    if (!attentions_.empty()) {
      auto& attn = attentions_[i];
      if (should_checkpoint(checkpointing_, *this)) {
        h = checkpoint([attn](const std::vector<torch::Tensor>& in) mutable { return attn->forward(in[0], in[1]); },
                       {h, context}, *attn);
      } else {
        h = attn->forward(h, context);
      }
    }
    out.skips.push_back(h);
  }
  if (downsampler_) {
    h = downsampler_(h);
    out.skips.push_back(h);
  }
  out.hidden = h;
  return out;
}

}  // namespace sdtrain

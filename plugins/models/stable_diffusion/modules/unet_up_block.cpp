#include "plugins/models/stable_diffusion/modules/unet_up_block.h"

#include "plugins/models/stable_diffusion/modules/activation_checkpoint.h"

namespace sdtrain {

UNetUpBlockImpl::UNetUpBlockImpl(const UNetUpBlockOptions& options) : options_(options) {
  auto resnets = register_module("resnets", torch::nn::ModuleList());
  torch::nn::ModuleList attentions{nullptr};
  if (options.cross_attention) attentions = register_module("attentions", torch::nn::ModuleList());
  for (int64_t i = 0; i < options.num_layers; ++i) {
    const int64_t skip_channels = i == options.num_layers - 1 ? options.in_channels : options.out_channels;
    const int64_t resnet_in = i == 0 ? options.prev_output_channels : options.out_channels;
    ResnetBlock2DOptions r;
    r.in_channels = resnet_in + skip_channels;
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
  if (options.add_upsample) {
    upsampler_ = Upsample2D(options.out_channels, options.out_channels);
    register_module("upsamplers", torch::nn::ModuleList(upsampler_));
  }
}

torch::Tensor UNetUpBlockImpl::forward(const torch::Tensor& x, std::vector<torch::Tensor>& skips,
                                       const torch::Tensor& temb, const torch::Tensor& context,
                                       const std::vector<int64_t>& upsample_size) {
  TORCH_CHECK(skips.size() >= resnets_.size(), "UNetUpBlock: needs ", resnets_.size(),
              " skip states, got ", skips.size());
  torch::Tensor h = x;
  for (size_t i = 0; i < resnets_.size(); ++i) {
    torch::Tensor skip = skips.back();
    skips.pop_back();
    h = torch::cat({h, skip}, 1);
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
  }
  if (upsampler_) h = upsampler_(h, upsample_size);
  return h;
}

}  // namespace sdtrain

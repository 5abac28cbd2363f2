#include "plugins/models/stable_diffusion/modules/vae_encoder.h"

#include "plugins/models/stable_diffusion/modules/activation_checkpoint.h"
#include "plugins/models/stable_diffusion/modules/module_config.h"

namespace sdtrain {

VaeEncoderImpl::VaeEncoderImpl(const AutoencoderKLConfig& config) {
  namespace nn = torch::nn;
  const auto channels = resolve_vae_block_out_channels(config);
  const int64_t n = static_cast<int64_t>(channels.size());
  const int64_t groups = config.norm_num_groups();
  conv_in_ = register_module("conv_in", nn::Conv2d(nn::Conv2dOptions(config.in_channels(), channels[0], 3).padding(1)));
  auto down = register_module("down_blocks", nn::ModuleList());
  int64_t out_ch = channels[0];
  for (int64_t i = 0; i < n; ++i) {
    UNetDownBlockOptions o;
    o.in_channels = out_ch;
    out_ch = channels[i];
    o.out_channels = out_ch;
    o.temb_channels = 0;
    o.num_layers = config.layers_per_block();
    o.groups = groups;
    o.eps = 1e-6;
    o.add_downsample = i != n - 1;
    o.downsample_padding = 0;
    down_blocks_.emplace_back(o);
    down->push_back(down_blocks_.back());
  }
  mid_block_ = register_module("mid_block", VaeMidBlock(channels.back(), groups));
  conv_norm_out_ = register_module("conv_norm_out", nn::GroupNorm(nn::GroupNormOptions(groups, channels.back()).eps(1e-6)));
  conv_out_ = register_module(
      "conv_out", nn::Conv2d(nn::Conv2dOptions(channels.back(), 2 * config.latent_channels(), 3).padding(1)));
  checkpointing_ = config.gradient_checkpointing();
}

torch::Tensor VaeEncoderImpl::forward(const torch::Tensor& x) {
  auto h = conv_in_(x);
  const bool ckpt = should_checkpoint(checkpointing_, *this);
  for (auto& block : down_blocks_) {
    if (ckpt) {
      h = checkpoint([block](const std::vector<torch::Tensor>& in) mutable { return block->forward(in[0], {}, {}).hidden; },
                     {h}, *block);
    } else {
      h = block->forward(h, {}, {}).hidden;
    }
  }
  if (ckpt) {
    auto mid = mid_block_;
    h = checkpoint([mid](const std::vector<torch::Tensor>& in) mutable { return mid->forward(in[0]); }, {h}, *mid);
  } else {
    h = mid_block_(h);
  }
  return conv_out_(torch::silu(conv_norm_out_(h)));
}

}  // namespace sdtrain

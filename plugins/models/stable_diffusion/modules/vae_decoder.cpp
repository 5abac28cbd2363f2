#include "plugins/models/stable_diffusion/modules/vae_decoder.h"

#include "plugins/models/stable_diffusion/modules/activation_checkpoint.h"
#include "plugins/models/stable_diffusion/modules/module_config.h"

namespace sdtrain {

VaeDecoderImpl::VaeDecoderImpl(const AutoencoderKLConfig& config) {
  namespace nn = torch::nn;
  const auto channels = resolve_vae_block_out_channels(config);
  const int64_t n = static_cast<int64_t>(channels.size());
  const int64_t groups = config.norm_num_groups();
  conv_in_ = register_module("conv_in", nn::Conv2d(nn::Conv2dOptions(config.latent_channels(), channels.back(), 3).padding(1)));
  mid_block_ = register_module("mid_block", VaeMidBlock(channels.back(), groups));
  auto up = register_module("up_blocks", nn::ModuleList());
  std::vector<int64_t> reversed(channels.rbegin(), channels.rend());
  int64_t out_ch = reversed[0];
  for (int64_t i = 0; i < n; ++i) {
    const int64_t prev = out_ch;
    out_ch = reversed[i];
    up_blocks_.emplace_back(prev, out_ch, config.layers_per_block() + 1, groups, i != n - 1);
    up->push_back(up_blocks_.back());
  }
  conv_norm_out_ = register_module("conv_norm_out", nn::GroupNorm(nn::GroupNormOptions(groups, channels[0]).eps(1e-6)));
  conv_out_ = register_module("conv_out", nn::Conv2d(nn::Conv2dOptions(channels[0], config.out_channels(), 3).padding(1)));
  checkpointing_ = config.gradient_checkpointing();
}

torch::Tensor VaeDecoderImpl::forward(const torch::Tensor& z) {
  auto h = conv_in_(z);
  const bool ckpt = should_checkpoint(checkpointing_, *this);
  if (ckpt) {
    auto mid = mid_block_;
    h = checkpoint([mid](const std::vector<torch::Tensor>& in) mutable { return mid->forward(in[0]); }, {h}, *mid);
  } else {
    h = mid_block_(h);
  }
  const auto upscale_dtype = up_blocks_.front()->parameters().front().scalar_type();
  h = h.to(upscale_dtype);
  for (auto& block : up_blocks_) {
    if (ckpt) {
      h = checkpoint([block](const std::vector<torch::Tensor>& in) mutable { return block->forward(in[0]); }, {h}, *block);
    } else {
      h = block->forward(h);
    }
  }
  return conv_out_(torch::silu(conv_norm_out_(h)));
}

}  // namespace sdtrain

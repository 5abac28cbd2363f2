#include "plugins/models/stable_diffusion/modules/unet_2d_condition_model.h"

#include "plugins/models/stable_diffusion/modules/module_config.h"

namespace sdtrain {

void set_conv_memory_format(torch::nn::Module& module, c10::MemoryFormat format) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters(/*recurse=*/true)) {
    if (p.dim() == 4) p.set_data(p.data().contiguous(format));
  }
}

UNet2DConditionModelImpl::UNet2DConditionModelImpl(const UNet2DConditionConfig& config)
    : config_(config) {
  namespace nn = torch::nn;
  const ResolvedUNetLayout layout = resolve_unet_layout(config);
  const auto& channels = layout.block_out_channels;
  const int64_t n = static_cast<int64_t>(channels.size());
  const int64_t groups = config.norm_num_groups();
  const double eps = config.norm_eps();
  time_proj_dim_ = channels[0];
  const int64_t temb = channels[0] * 4;

  conv_in_ = register_module("conv_in", nn::Conv2d(nn::Conv2dOptions(config.in_channels(), channels[0], 3).padding(1)));
  time_embedding_ = register_module("time_embedding", TimestepEmbedding(time_proj_dim_, temb));
  if (layout.text_time_embedding) {
    add_embedding_ = register_module("add_embedding",
                                     TimestepEmbedding(config.projection_class_embeddings_input_dim(), temb));
  }
  // diffusers' attention_head_dim is a head count; each block's heads and depth, up blocks in reverse.
  auto transformer = [&](size_t block) {
    Transformer2DOptions t;
    t.heads = layout.heads[block];
    t.cross_attention_dim = config.cross_attention_dim();
    t.num_layers = layout.transformer_layers[block];
    t.use_linear_projection = config.use_linear_projection();
    t.upcast_attention = config.upcast_attention();
    return t;
  };

  auto down = register_module("down_blocks", nn::ModuleList());
  int64_t out_ch = channels[0];
  for (int64_t i = 0; i < n; ++i) {
    UNetDownBlockOptions o;
    o.in_channels = out_ch;
    out_ch = channels[i];
    o.out_channels = out_ch;
    o.temb_channels = temb;
    o.num_layers = config.layers_per_block();
    o.groups = groups;
    o.eps = eps;
    o.add_downsample = i != n - 1;
    o.downsample_padding = 1;
    o.cross_attention = layout.down_block_types[i] == "CrossAttnDownBlock2D";
    o.transformer = transformer(static_cast<size_t>(i));
    down_blocks_.emplace_back(o);
    down->push_back(down_blocks_.back());
  }

  UNetMidBlockOptions m;
  m.channels = channels.back();
  m.temb_channels = temb;
  m.groups = groups;
  m.eps = eps;
  m.output_scale_factor = config.mid_block_scale_factor();
  m.transformer = transformer(static_cast<size_t>(n - 1));
  mid_block_ = register_module("mid_block", UNetMidBlock(m));

  auto up = register_module("up_blocks", nn::ModuleList());
  std::vector<int64_t> reversed(channels.rbegin(), channels.rend());
  out_ch = reversed[0];
  for (int64_t i = 0; i < n; ++i) {
    UNetUpBlockOptions o;
    o.prev_output_channels = out_ch;
    out_ch = reversed[i];
    o.out_channels = out_ch;
    o.in_channels = reversed[std::min(i + 1, n - 1)];
    o.temb_channels = temb;
    o.num_layers = config.layers_per_block() + 1;
    o.groups = groups;
    o.eps = eps;
    o.add_upsample = i != n - 1;
    o.cross_attention = layout.up_block_types[i] == "CrossAttnUpBlock2D";
    o.transformer = transformer(static_cast<size_t>(n - 1 - i));
    up_blocks_.emplace_back(o);
    up->push_back(up_blocks_.back());
  }

  conv_norm_out_ = register_module(
      "conv_norm_out", nn::GroupNorm(nn::GroupNormOptions(groups, channels[0]).eps(eps)));
  conv_out_ = register_module("conv_out", nn::Conv2d(nn::Conv2dOptions(channels[0], config.out_channels(), 3).padding(1)));

  set_gradient_checkpointing(config.gradient_checkpointing());
  if (config.channels_last()) set_channels_last(true);
}

torch::Tensor UNet2DConditionModelImpl::text_time_embedding(const UNetAddedConditions& added, int64_t batch) const {
  TORCH_CHECK(added.text_embeds.defined() && added.time_ids.defined(),
              "UNet2DConditionModel: addition_embed_type text_time needs text_embeds [B, pooled] and time_ids [B, 6]");
  TORCH_CHECK(added.text_embeds.dim() == 2 && added.text_embeds.size(0) == batch && added.time_ids.dim() == 2 &&
                  added.time_ids.size(0) == batch,
              "UNet2DConditionModel: text_embeds must be [B, pooled] and time_ids [B, n] with B = ", batch, ", got ",
              added.text_embeds.sizes(), " and ", added.time_ids.sizes());
  const int64_t time_dim = config_.addition_time_embed_dim();
  TORCH_CHECK(added.text_embeds.size(1) + added.time_ids.size(1) * time_dim ==
                  config_.projection_class_embeddings_input_dim(),
              "UNet2DConditionModel: text_embeds width ", added.text_embeds.size(1), " + ", added.time_ids.size(1),
              " time ids x ", time_dim, " != projection_class_embeddings_input_dim ",
              config_.projection_class_embeddings_input_dim());
  // diffusers: add_time_proj(time_ids.flatten()) reshaped per sample, after the pooled text
  // embedding; float32 throughout, cast to the embedding's dtype by the caller.
  auto time_embeds = timestep_sinusoidal_embedding(added.time_ids.to(added.text_embeds.device()).flatten(), time_dim,
                                                   config_.flip_sin_to_cos(), config_.freq_shift())
                         .reshape({batch, -1});
  return torch::cat({added.text_embeds.to(torch::kFloat32), time_embeds}, -1);
}

void UNet2DConditionModelImpl::set_gradient_checkpointing(bool enabled) {
  checkpointing_ = enabled;
  for (auto& b : down_blocks_) b->set_gradient_checkpointing(enabled);
  mid_block_->set_gradient_checkpointing(enabled);
  for (auto& b : up_blocks_) b->set_gradient_checkpointing(enabled);
}

void UNet2DConditionModelImpl::set_channels_last(bool enabled) {
  channels_last_ = enabled;
  set_conv_memory_format(*this, enabled ? c10::MemoryFormat::ChannelsLast : c10::MemoryFormat::Contiguous);
}

torch::Tensor UNet2DConditionModelImpl::forward(const torch::Tensor& sample, const torch::Tensor& timestep,
                                                const torch::Tensor& encoder_hidden_states) {
  return forward(sample, timestep, encoder_hidden_states, UNetAddedConditions{});
}

torch::Tensor UNet2DConditionModelImpl::forward(const torch::Tensor& sample, const torch::Tensor& timestep,
                                                const torch::Tensor& encoder_hidden_states,
                                                const UNetAddedConditions& added) {
  TORCH_CHECK(sample.dim() == 4, "UNet2DConditionModel: sample must be [B, C, H, W], got ", sample.sizes());
  TORCH_CHECK(encoder_hidden_states.dim() == 3 && encoder_hidden_states.size(0) == sample.size(0),
              "UNet2DConditionModel: encoder_hidden_states must be [B, S, D] with B = ", sample.size(0),
              ", got ", encoder_hidden_states.sizes());
  const int64_t batch = sample.size(0);
  torch::Tensor t = timestep.to(sample.device());
  if (t.dim() == 0) t = t.reshape({1});
  TORCH_CHECK(t.dim() == 1 && (t.size(0) == 1 || t.size(0) == batch),
              "UNet2DConditionModel: timestep must be a scalar or [B], got ", timestep.sizes());
  t = t.expand({batch});

  auto t_emb = timestep_sinusoidal_embedding(t, time_proj_dim_, config_.flip_sin_to_cos(), config_.freq_shift());
  t_emb = t_emb.to(sample.scalar_type());
  auto emb = time_embedding_(t_emb);
  if (add_embedding_) {
    emb = emb + add_embedding_(text_time_embedding(added, batch).to(emb.scalar_type()));
  } else {
    TORCH_CHECK(!added.text_embeds.defined() && !added.time_ids.defined(),
                "UNet2DConditionModel: text_embeds/time_ids given to a UNet without addition_embed_type text_time");
  }

  const auto out_format = sample.suggest_memory_format();
  auto h = channels_last_ ? sample.contiguous(c10::MemoryFormat::ChannelsLast) : sample;
  h = conv_in_(h);

  std::vector<torch::Tensor> skips{h};
  for (auto& block : down_blocks_) {
    auto out = block->forward(h, emb, encoder_hidden_states);
    h = out.hidden;
    skips.insert(skips.end(), out.skips.begin(), out.skips.end());
  }
  h = mid_block_->forward(h, emb, encoder_hidden_states);
  for (size_t i = 0; i < up_blocks_.size(); ++i) {
    auto& block = up_blocks_[i];
    const bool is_final = i + 1 == up_blocks_.size();
    std::vector<int64_t> upsample_size;
    if (!is_final) {
      // The skip the next block starts from fixes the size (handles odd latent sizes).
      const auto& next_skip = skips[skips.size() - 1 - static_cast<size_t>(block->num_layers())];
      upsample_size = {next_skip.size(2), next_skip.size(3)};
    }
    h = block->forward(h, skips, emb, encoder_hidden_states, upsample_size);
  }
  h = conv_out_(torch::silu(conv_norm_out_(h)));
  return h.contiguous(out_format);
}

}  // namespace sdtrain

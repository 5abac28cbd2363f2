#pragma once
/// diffusers UpBlock2D / CrossAttnUpBlock2D: each resnet takes the previous state concatenated
/// (on channels) with one skip state from the down path (consumed last-first), optionally
/// followed by a Transformer2DModel; then an optional nearest x2 Upsample2D.
/// Keys: resnets.N, attentions.N, upsamplers.0.conv.
#include <vector>

#include <torch/torch.h>

#include "plugins/models/stable_diffusion/modules/resnet_block_2d.h"
#include "plugins/models/stable_diffusion/modules/transformer_2d_model.h"
#include "plugins/models/stable_diffusion/modules/upsample_2d.h"

namespace sdtrain {

struct UNetUpBlockOptions {
  int64_t in_channels = 0;           ///< channels of the deepest skip this block consumes
  int64_t prev_output_channels = 0;  ///< channels of the incoming state
  int64_t out_channels = 0;
  int64_t temb_channels = 0;
  int64_t num_layers = 3;            ///< resnets (= layers_per_block + 1)
  int64_t groups = 32;
  double eps = 1e-5;
  bool add_upsample = true;
  bool cross_attention = false;      ///< CrossAttnUpBlock2D
  /// The Transformer2DModels' settings (cross-attention only): heads, cross_attention_dim,
  /// num_layers, use_linear_projection, upcast_attention; the block sets in_channels, dim_head
  /// (channels / heads) and norm_num_groups.
  Transformer2DOptions transformer;
};

class UNetUpBlockImpl : public torch::nn::Module {
 public:
  explicit UNetUpBlockImpl(const UNetUpBlockOptions& options);
  /// Consumes num_layers states from the back of `skips` (removing them). `upsample_size` is the
  /// spatial size to upsample to (empty = x2).
  torch::Tensor forward(const torch::Tensor& x, std::vector<torch::Tensor>& skips,
                        const torch::Tensor& temb, const torch::Tensor& context,
                        const std::vector<int64_t>& upsample_size = {});
  void set_gradient_checkpointing(bool enabled) { checkpointing_ = enabled; }
  int64_t num_layers() const { return options_.num_layers; }

 private:
  UNetUpBlockOptions options_;
  bool checkpointing_ = false;
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Transformer2DModel> attentions_;
  Upsample2D upsampler_{nullptr};
};
TORCH_MODULE(UNetUpBlock);

}  // namespace sdtrain

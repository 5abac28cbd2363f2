#pragma once
// A tiny stable_diffusion model (two-level UNet of width 32/64, a four-level autoencoder of width
// 32, a two-layer CLIP of width 32) for tests of the training path: the very code of SD v1 at a
// size that trains in milliseconds.
#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "plugins/builtin_plugins.h"
#include "plugins/models/stable_diffusion/stable_diffusion_model.h"

namespace sdtrain::testing {

inline const char* kTinySd =
    "unet { sample_size: 4 in_channels: 4 out_channels: 4 block_out_channels: [32, 64] layers_per_block: 1\n"
    "       cross_attention_dim: 32 attention_head_dim: 8 norm_num_groups: 32\n"
    "       down_block_types: [\"CrossAttnDownBlock2D\", \"DownBlock2D\"]\n"
    "       up_block_types: [\"UpBlock2D\", \"CrossAttnUpBlock2D\"] }\n"
    "vae { block_out_channels: [32, 32, 32, 32] layers_per_block: 1 sample_size: 32 }\n"
    "text_encoder { hidden_size: 32 intermediate_size: 37 num_hidden_layers: 2 num_attention_heads: 4 }\n";

/// The tiny model's options with `extra` (StableDiffusionOptions text) appended.
inline StableDiffusionOptions tiny_options(const std::string& extra) {
  StableDiffusionOptions options;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(std::string(kTinySd) + extra, &options)) << extra;
  return options;
}

/// The tiny model made SDXL-shaped: a second text encoder of width 48 with a 16-wide projection,
/// the UNet's context the two widths together, linear projections and the text_time embedding
/// (16 + 6 x 8 inputs).
inline void make_sdxl(StableDiffusionOptions& options) {
  UNet2DConditionConfig& unet = *options.mutable_unet();
  unet.set_cross_attention_dim(32 + 48);
  unet.set_use_linear_projection(true);
  unet.set_addition_embed_type("text_time");
  unet.set_addition_time_embed_dim(8);
  unet.set_projection_class_embeddings_input_dim(16 + 6 * 8);
  ClipTextConfig& second = *options.mutable_text_encoder_2();
  second.set_hidden_size(48);
  second.set_intermediate_size(53);
  second.set_num_hidden_layers(2);
  second.set_num_attention_heads(4);
  second.set_hidden_act("gelu");
  second.set_projection_dim(16);
}

/// The same random weights for the same seed (as a run initialises them from run.seed).
/// `sdxl`: shaped by make_sdxl.
inline std::unique_ptr<StableDiffusionModel> make_tiny_model(const std::string& extra, uint64_t seed = 3,
                                                             const std::filesystem::path& base_dir = ".",
                                                             torch::ScalarType compute_dtype = torch::kFloat32,
                                                             bool sdxl = false) {
  anchor_builtin_plugins();
  torch::manual_seed(seed);
  PluginContext context;
  context.base_dir = base_dir.string();
  context.compute_dtype = compute_dtype;
  StableDiffusionOptions options = tiny_options(extra);
  if (sdxl) make_sdxl(options);
  if (options.first_stage() == StableDiffusionOptions::PIXELS) {
    options.mutable_unet()->set_in_channels(3);
    options.mutable_unet()->set_out_channels(3);
  }
  return std::make_unique<StableDiffusionModel>(options, context);
}

}  // namespace sdtrain::testing

#include <gtest/gtest.h>

#include <algorithm>

#include "plugins/models/stable_diffusion/weights/sd_name_table.h"
#include "plugins/models/stable_diffusion/weights/sd_weights.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

/// SD v1: 4 levels, 2 resnets, attention in the first three down / last three up blocks.
UNetLayout sd_v1_unet() { return UNetLayout{4, 2, {true, true, true, false}, {false, true, true, true}, true}; }

std::string to_diffusers(const std::vector<NameRow>& rows, const std::string& original) {
  NamedTensors in{{original, torch::zeros({1})}};
  RenameResult r = rename_component(in, rows, NameLayout::kOriginal);
  return r.tensors.empty() ? "<unmatched>" : r.tensors.begin()->first;
}

std::string to_original(const std::vector<NameRow>& rows, const std::string& diffusers) {
  NamedTensors in{{diffusers, torch::zeros({1})}};
  RenameResult r = rename_component(in, rows, NameLayout::kDiffusers);
  return r.tensors.empty() ? "<unmatched>" : r.tensors.begin()->first;
}

TEST(SdNameTable, UNetV1KnownPairs) {
  auto rows = unet_name_rows(sd_v1_unet());
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"time_embed.0.weight", "time_embedding.linear_1.weight"},
      {"time_embed.2.bias", "time_embedding.linear_2.bias"},
      {"input_blocks.0.0.weight", "conv_in.weight"},
      {"input_blocks.1.0.in_layers.0.weight", "down_blocks.0.resnets.0.norm1.weight"},
      {"input_blocks.1.0.in_layers.2.bias", "down_blocks.0.resnets.0.conv1.bias"},
      {"input_blocks.2.0.emb_layers.1.weight", "down_blocks.0.resnets.1.time_emb_proj.weight"},
      {"input_blocks.4.0.out_layers.0.weight", "down_blocks.1.resnets.0.norm2.weight"},
      {"input_blocks.4.0.out_layers.3.weight", "down_blocks.1.resnets.0.conv2.weight"},
      {"input_blocks.4.0.skip_connection.weight", "down_blocks.1.resnets.0.conv_shortcut.weight"},
      {"input_blocks.4.1.proj_in.weight", "down_blocks.1.attentions.0.proj_in.weight"},
      {"input_blocks.8.1.transformer_blocks.0.attn2.to_k.weight",
       "down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_k.weight"},
      {"input_blocks.3.0.op.weight", "down_blocks.0.downsamplers.0.conv.weight"},
      {"input_blocks.9.0.op.bias", "down_blocks.2.downsamplers.0.conv.bias"},
      {"input_blocks.11.0.in_layers.0.weight", "down_blocks.3.resnets.1.norm1.weight"},
      {"middle_block.0.in_layers.2.weight", "mid_block.resnets.0.conv1.weight"},
      {"middle_block.1.transformer_blocks.0.norm3.weight", "mid_block.attentions.0.transformer_blocks.0.norm3.weight"},
      {"middle_block.2.out_layers.3.bias", "mid_block.resnets.1.conv2.bias"},
      {"output_blocks.0.0.skip_connection.weight", "up_blocks.0.resnets.0.conv_shortcut.weight"},
      {"output_blocks.2.1.conv.weight", "up_blocks.0.upsamplers.0.conv.weight"},
      {"output_blocks.3.1.proj_out.bias", "up_blocks.1.attentions.0.proj_out.bias"},
      {"output_blocks.5.2.conv.bias", "up_blocks.1.upsamplers.0.conv.bias"},
      {"output_blocks.8.2.conv.weight", "up_blocks.2.upsamplers.0.conv.weight"},
      {"output_blocks.11.0.skip_connection.weight", "up_blocks.3.resnets.2.conv_shortcut.weight"},
      {"output_blocks.11.1.norm.weight", "up_blocks.3.attentions.2.norm.weight"},
      {"out.0.weight", "conv_norm_out.weight"},
      {"out.2.bias", "conv_out.bias"},
  };
  for (const auto& [original, diffusers] : pairs) {
    EXPECT_EQ(to_diffusers(rows, original), diffusers) << original;
    EXPECT_EQ(to_original(rows, diffusers), original) << diffusers;
  }
  EXPECT_EQ(to_diffusers(rows, "input_blocks.1.0.bogus.weight"), "<unmatched>");
  EXPECT_EQ(to_original(rows, "up_blocks.0.attentions.0.norm.weight"), "<unmatched>");  // UpBlock2D has none
}

TEST(SdNameTable, InfersLayoutFromEitherNaming) {
  auto rows = unet_name_rows(sd_v1_unet());
  std::vector<std::string> original, diffusers;
  for (const auto& row : rows) {
    original.push_back(row.original + ".weight");
    diffusers.push_back(row.diffusers + ".weight");
  }
  for (const auto& layout : {infer_unet_layout(original, NameLayout::kOriginal, "test"),
                             infer_unet_layout(diffusers, NameLayout::kDiffusers, "test")}) {
    EXPECT_EQ(layout.levels, 4);
    EXPECT_EQ(layout.layers_per_block, 2);
    EXPECT_EQ(layout.down_attention, sd_v1_unet().down_attention);
    EXPECT_EQ(layout.up_attention, sd_v1_unet().up_attention);
    EXPECT_TRUE(layout.mid_attention);
  }
  EXPECT_THROW(infer_unet_layout({"conv_in.weight"}, NameLayout::kDiffusers, "x.safetensors"), FormatError);
}

TEST(SdNameTable, VaeDecoderOrderIsReversedAndAttentionReshaped) {
  auto rows = vae_name_rows(VaeLayout{4, 2});
  EXPECT_EQ(to_diffusers(rows, "decoder.up.3.block.0.conv1.weight"), "decoder.up_blocks.0.resnets.0.conv1.weight");
  EXPECT_EQ(to_diffusers(rows, "decoder.up.0.block.2.nin_shortcut.bias"), "decoder.up_blocks.3.resnets.2.conv_shortcut.bias");
  EXPECT_EQ(to_diffusers(rows, "decoder.up.3.upsample.conv.weight"), "decoder.up_blocks.0.upsamplers.0.conv.weight");
  EXPECT_EQ(to_diffusers(rows, "decoder.up.0.upsample.conv.weight"), "<unmatched>");
  EXPECT_EQ(to_diffusers(rows, "encoder.down.1.block.0.nin_shortcut.weight"),
            "encoder.down_blocks.1.resnets.0.conv_shortcut.weight");
  EXPECT_EQ(to_diffusers(rows, "encoder.down.2.downsample.conv.bias"), "encoder.down_blocks.2.downsamplers.0.conv.bias");
  EXPECT_EQ(to_diffusers(rows, "encoder.norm_out.weight"), "encoder.conv_norm_out.weight");
  EXPECT_EQ(to_diffusers(rows, "decoder.mid.block_2.norm1.bias"), "decoder.mid_block.resnets.1.norm1.bias");
  EXPECT_EQ(to_diffusers(rows, "post_quant_conv.weight"), "post_quant_conv.weight");

  NamedTensors attention = {{"encoder.mid.attn_1.q.weight", torch::randn({8, 8, 1, 1})},
                            {"encoder.mid.attn_1.proj_out.bias", torch::randn({8})},
                            {"encoder.mid.attn_1.norm.weight", torch::randn({8})}};
  RenameResult r = rename_component(attention, rows, NameLayout::kOriginal);
  ASSERT_TRUE(r.unmatched.empty());
  const auto& q = r.tensors.at("encoder.mid_block.attentions.0.to_q.weight");
  EXPECT_EQ(q.sizes(), torch::IntArrayRef({8, 8}));
  EXPECT_TRUE(torch::equal(q, attention.at("encoder.mid.attn_1.q.weight").reshape({8, 8})));
  EXPECT_TRUE(r.tensors.count("encoder.mid_block.attentions.0.to_out.0.bias"));
  EXPECT_TRUE(r.tensors.count("encoder.mid_block.attentions.0.group_norm.weight"));
  RenameResult back = rename_component(r.tensors, rows, NameLayout::kDiffusers);
  ASSERT_EQ(back.tensors.size(), 3u);
  for (const auto& [name, tensor] : attention) EXPECT_TRUE(torch::equal(back.tensors.at(name), tensor)) << name;
}

TEST(SdNameTable, ClipBothOriginalLayoutsAndPositionIds) {
  NamedTensors current = {{"transformer.text_model.embeddings.position_embedding.weight", torch::randn({77, 8})},
                          {"transformer.text_model.embeddings.position_ids", torch::arange(77).unsqueeze(0)},
                          {"transformer.text_model.final_layer_norm.bias", torch::randn({8})}};
  RenameResult r = clip_original_to_diffusers(current);
  EXPECT_EQ(r.tensors.size(), 2u);
  EXPECT_TRUE(r.tensors.count("text_model.embeddings.position_embedding.weight"));
  EXPECT_TRUE(r.tensors.count("text_model.final_layer_norm.bias"));
  NamedTensors old = {{"transformer.embeddings.token_embedding.weight", torch::randn({10, 8})},
                      {"transformer.encoder.layers.0.mlp.fc1.weight", torch::randn({4, 8})}};
  RenameResult o = clip_original_to_diffusers(old);
  EXPECT_TRUE(o.tensors.count("text_model.embeddings.token_embedding.weight"));
  EXPECT_TRUE(o.tensors.count("text_model.encoder.layers.0.mlp.fc1.weight"));
  RenameResult back = clip_diffusers_to_original(r.tensors);
  const auto& ids = back.tensors.at("transformer.text_model.embeddings.position_ids");
  EXPECT_EQ(ids.scalar_type(), torch::kInt64);
  EXPECT_TRUE(torch::equal(ids, torch::arange(77).unsqueeze(0)));
}

TEST(SdNameTable, SdxlTextTimeEmbeddingIsLabelEmb) {
  // SDXL: 3 levels, no attention in the first down / last up block, and the text_time embedding.
  const std::vector<std::string> diffusers = {"down_blocks.0.resnets.1.conv1.weight", "down_blocks.2.resnets.0.conv1.weight",
                                              "down_blocks.1.attentions.0.proj_in.weight",
                                              "add_embedding.linear_1.weight"};
  const UNetLayout layout = infer_unet_layout(diffusers, NameLayout::kDiffusers, "unet");
  EXPECT_TRUE(layout.text_time_embedding);
  const auto rows = unet_name_rows(layout);
  EXPECT_EQ(to_diffusers(rows, "label_emb.0.0.weight"), "add_embedding.linear_1.weight");
  EXPECT_EQ(to_diffusers(rows, "label_emb.0.2.bias"), "add_embedding.linear_2.bias");
  EXPECT_EQ(to_original(rows, "add_embedding.linear_2.weight"), "label_emb.0.2.weight");
  EXPECT_TRUE(infer_unet_layout({"input_blocks.1.0.in_layers.0.weight", "input_blocks.2.0.in_layers.0.weight",
                                 "label_emb.0.0.weight"},
                                NameLayout::kOriginal, "unet")
                  .text_time_embedding);
  const std::vector<std::string> without(diffusers.begin(), diffusers.end() - 1);
  EXPECT_FALSE(infer_unet_layout(without, NameLayout::kDiffusers, "unet").text_time_embedding);
  EXPECT_EQ(to_diffusers(unet_name_rows(sd_v1_unet()), "label_emb.0.0.weight"), "<unmatched>");  // not SD v1's
}

TEST(SdNameTable, EmaKeyDropsDots) {
  EXPECT_EQ(ldm_ema_key("model.diffusion_model.input_blocks.0.0.weight"), "model_ema.diffusion_modelinput_blocks00weight");
  EXPECT_EQ(ldm_ema_key("model.diffusion_model.out.2.bias"), "model_ema.diffusion_modelout2bias");
}

TEST(SdWeights, MatchStateDictReshapesOneByOneAndReportsByName) {
  NamedTensors actual = {{"proj_in.weight", torch::randn({4, 4, 1, 1})},
                         {"norm.weight", torch::randn({3})},
                         {"extra.weight", torch::randn({1})}};
  std::map<std::string, torch::Tensor> expected = {{"proj_in.weight", torch::zeros({4, 4})},
                                                   {"norm.weight", torch::zeros({4})},
                                                   {"missing.bias", torch::zeros({2})}};
  WeightIssues issues = match_state_dict(actual, expected, "unet.");
  EXPECT_EQ(actual.at("proj_in.weight").sizes(), torch::IntArrayRef({4, 4}));
  EXPECT_EQ(issues.missing, std::vector<std::string>{"unet.missing.bias"});
  EXPECT_EQ(issues.unexpected, std::vector<std::string>{"unet.extra.weight"});
  ASSERT_EQ(issues.mismatched.size(), 1u);
  EXPECT_NE(issues.mismatched[0].find("unet.norm.weight"), std::string::npos);
  EXPECT_NE(issues.describe().find("missing keys (1): unet.missing.bias"), std::string::npos);
}

}  // namespace
}  // namespace sdtrain

// SDXL adapters without any Python reference, on a tiny SDXL-shaped UNet (text_time embedding,
// linear projections) and two text encoders built here: kohya's SDXL names (the UNet's modules by
// their LDM paths, lora_te1_ / lora_te2_), the kohya ↔ PEFT round trip with text_encoder_2,
// diffusers-spelt UNet names read as the LDM ones, merging into the second encoder, and refusals
// of a one-encoder adapter. diffusers' side: sd_lora_diffusers_test.cpp (LoraDiffusersXl.*).
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "framework/io/safetensors_reader.h"
#include "framework/io/safetensors_writer.h"
#include "framework/util/file_util.h"
#include "plugins/models/stable_diffusion/weights/sd_lora_format.h"
#include "sdtrain/errors.h"
#include "tests/common/test_env.h"
#include "tests/weights/lora_test_util.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

ClipTextConfig tiny_clip(int64_t width, const std::string& act, int64_t projection) {
  ClipTextConfig clip;
  clip.set_vocab_size(1000);
  clip.set_hidden_size(width);
  clip.set_intermediate_size(2 * width);
  clip.set_num_attention_heads(4);
  clip.set_num_hidden_layers(2);
  clip.set_hidden_act(act);
  if (projection > 0) clip.set_projection_dim(projection);
  return clip;
}

/// Two UNet levels, the first with cross-attention (so its LDM blocks are input_blocks.1.{0,1},
/// the downsampler input_blocks.2.0, the second level input_blocks.3.0; the up path mirrors it),
/// SDXL's text_time embedding; CLIP widths 32 and 48 (the second with a projection of 16).
SdNetworks tiny_sdxl_networks() {
  UNet2DConditionConfig unet;
  for (int c : {32, 64}) unet.add_block_out_channels(c);
  unet.set_layers_per_block(1);
  unet.set_cross_attention_dim(32 + 48);
  unet.add_attention_head_dim(4);
  unet.set_norm_num_groups(16);
  unet.set_sample_size(16);
  unet.set_use_linear_projection(true);
  unet.add_down_block_types("CrossAttnDownBlock2D");
  unet.add_down_block_types("DownBlock2D");
  unet.add_up_block_types("UpBlock2D");
  unet.add_up_block_types("CrossAttnUpBlock2D");
  unet.set_addition_embed_type("text_time");
  unet.set_addition_time_embed_dim(8);
  unet.set_projection_class_embeddings_input_dim(16 + 6 * 8);
  torch::manual_seed(0);
  SdNetworks networks;
  networks.unet = UNet2DConditionModel(unet);
  networks.text_encoder = ClipTextModel(tiny_clip(32, "quick_gelu", 0));
  networks.text_encoder_2 = ClipTextModel(tiny_clip(48, "gelu", 16));
  return networks;
}

struct SdxlLoraTest : ::testing::Test {
  SdNetworks networks = tiny_sdxl_networks();
  std::map<std::string, LoraTarget> targets = lora_targets(networks);
  fs::path dir = test::scratch_dir();

  std::string path(const std::string& name) const { return (dir / name).string(); }
  std::string write_raw(const std::string& name, const std::map<std::string, torch::Tensor>& tensors) const {
    return test::write_raw_safetensors(path(name), tensors);
  }
  std::string read_error(const std::string& file) const { return test::lora_read_error(file, targets); }
};

TEST_F(SdxlLoraTest, NamesAreKohyasSdxlNames) {
  // LDM module path of the tiny layout ↔ diffusers module path, written out by hand.
  const std::map<std::string, std::string> expected = {
      {"lora_unet_input_blocks_0_0", "conv_in"},
      {"lora_unet_time_embed_0", "time_embedding.linear_1"},
      {"lora_unet_label_emb_0_0", "add_embedding.linear_1"},
      {"lora_unet_label_emb_0_2", "add_embedding.linear_2"},
      {"lora_unet_input_blocks_1_0_in_layers_2", "down_blocks.0.resnets.0.conv1"},
      {"lora_unet_input_blocks_1_0_emb_layers_1", "down_blocks.0.resnets.0.time_emb_proj"},
      {"lora_unet_input_blocks_1_1_proj_in", "down_blocks.0.attentions.0.proj_in"},
      {"lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q",
       "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"},
      {"lora_unet_input_blocks_1_1_transformer_blocks_0_ff_net_0_proj",
       "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj"},
      {"lora_unet_input_blocks_2_0_op", "down_blocks.0.downsamplers.0.conv"},
      {"lora_unet_input_blocks_3_0_skip_connection", "down_blocks.1.resnets.0.conv_shortcut"},
      {"lora_unet_middle_block_1_transformer_blocks_0_attn2_to_k", "mid_block.attentions.0.transformer_blocks.0.attn2.to_k"},
      {"lora_unet_middle_block_2_out_layers_3", "mid_block.resnets.1.conv2"},
      {"lora_unet_output_blocks_1_1_conv", "up_blocks.0.upsamplers.0.conv"},
      {"lora_unet_output_blocks_2_1_proj_out", "up_blocks.1.attentions.0.proj_out"},
      {"lora_unet_output_blocks_3_1_transformer_blocks_0_attn2_to_out_0",
       "up_blocks.1.attentions.1.transformer_blocks.0.attn2.to_out.0"},
      {"lora_unet_out_2", "conv_out"},
  };
  for (const auto& [name, module_path] : expected) {
    ASSERT_TRUE(targets.count(name)) << name;
    EXPECT_EQ(targets.at(name).component, "unet") << name;
    EXPECT_EQ(targets.at(name).module_path, module_path) << name;
  }
  const LoraTarget& te1 = targets.at("lora_te1_text_model_encoder_layers_0_self_attn_q_proj");
  EXPECT_EQ(te1.component, "text_encoder");
  EXPECT_EQ(te1.weight_shape, (std::vector<int64_t>{32, 32}));
  const LoraTarget& te2 = targets.at("lora_te2_text_model_encoder_layers_1_mlp_fc2");
  EXPECT_EQ(te2.component, "text_encoder_2");
  EXPECT_EQ(te2.module_path, "text_model.encoder.layers.1.mlp.fc2");
  EXPECT_EQ(te2.weight_shape, (std::vector<int64_t>{48, 96}));
  EXPECT_TRUE(targets.count("lora_te2_text_projection"));
  std::size_t unet = 0;
  for (const auto& [name, target] : targets) {
    EXPECT_NE(name.rfind("lora_te_", 0), 0u) << name << ": SDXL names its encoders lora_te1_ / lora_te2_";
    EXPECT_EQ(name.find("down_blocks"), std::string::npos) << name;
    unet += target.component == "unet" ? 1 : 0;
  }
  // Every Linear and Conv2d of the UNet has a name of its own.
  std::size_t layers = 0;
  for (const auto& item : networks.unet->named_modules("", false)) {
    layers += item.value()->as<torch::nn::Linear>() || item.value()->as<torch::nn::Conv2d>() ? 1 : 0;
  }
  EXPECT_EQ(unet, layers);
}

TEST_F(SdxlLoraTest, KohyaToPeftToKohyaIsBitIdenticalWithTheSecondEncoder) {
  const LoraFile original = test::random_lora(targets, 1);
  ASSERT_TRUE(original.tensors.count("lora_te2_text_model_encoder_layers_0_self_attn_k_proj.alpha"));
  write_lora_file(original, path("a.safetensors"), LoraFormat::kKohya, targets);
  write_lora_file(read_lora_file(path("a.safetensors"), targets), path("b.safetensors"), LoraFormat::kPeft, targets);
  SafetensorsReader peft(path("b.safetensors"));
  EXPECT_TRUE(peft.contains("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight"));
  EXPECT_TRUE(peft.contains("text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight"));
  EXPECT_TRUE(peft.contains("text_encoder_2.text_model.encoder.layers.1.mlp.fc1.lora_B.weight"));
  const auto config = nlohmann::json::parse(peft.metadata().at("lora_adapter_metadata"));
  EXPECT_EQ(config.at("text_encoder_2.r"), 4);
  EXPECT_EQ(config.at("text_encoder_2.alpha_pattern").at("encoder.layers.0.self_attn.k_proj"), 8);
  EXPECT_EQ(config.at("text_encoder_2.rank_pattern").at("encoder.layers.1.mlp.fc1"), 3);
  const LoraFile back = read_lora_file(path("b.safetensors"), targets);
  write_lora_file(back, path("c.safetensors"), LoraFormat::kKohya, targets);
  EXPECT_EQ(read_file(path("c.safetensors")), read_file(path("a.safetensors")));
}

TEST_F(SdxlLoraTest, DiffusersSpeltUnetNamesReadAsTheLdmOnes) {
  const LoraFile original = test::random_lora(targets, 2);
  std::map<std::string, torch::Tensor> respelt;
  for (const auto& [key, tensor] : original.tensors) {
    const std::string name = key.substr(0, key.find('.'));
    const LoraTarget& target = targets.at(name);
    const std::string spelt = target.component == "unet" ? kohya_lora_name("unet", target.module_path) : name;
    respelt[spelt + key.substr(name.size())] = tensor;
  }
  ASSERT_TRUE(respelt.count("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"));
  const LoraFile read = read_lora_file(write_raw("diffusers_spelt.safetensors", respelt), targets);
  ASSERT_EQ(read.tensors.size(), original.tensors.size());
  for (const auto& [key, tensor] : original.tensors) {
    ASSERT_TRUE(read.tensors.count(key)) << key;
    EXPECT_TRUE(torch::equal(read.tensors.at(key), tensor)) << key;
  }
}

TEST_F(SdxlLoraTest, MergeReachesTheSecondEncoder) {
  const LoraFile lora = test::random_lora(targets, 3);
  const std::string path_2 = "text_model.encoder.layers.1.self_attn.v_proj";
  const torch::Tensor before = networks.text_encoder_2->named_parameters()[path_2 + ".weight"].clone();
  merge_lora(networks, lora, 0.5, targets);
  const std::string name = "lora_te2_text_model_encoder_layers_1_self_attn_v_proj";
  const torch::Tensor delta =
      lora.tensors.at(name + ".lora_up.weight").mm(lora.tensors.at(name + ".lora_down.weight")) * (2.0 / 4 * 0.5);
  EXPECT_TRUE(torch::allclose(networks.text_encoder_2->named_parameters()[path_2 + ".weight"], before + delta, 1e-6, 1e-7));
}

TEST_F(SdxlLoraTest, RefusesAnAdapterWithOneTextEncoder) {
  const std::string kohya = write_raw(
      "sd1.safetensors", {{"lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", torch::zeros({4, 32})},
                          {"lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", torch::zeros({32, 4})}});
  std::string message = read_error(kohya);
  EXPECT_NE(message.find("'lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight'"), std::string::npos)
      << message;
  EXPECT_NE(message.find("SDXL's are lora_te1_ / lora_te2_"), std::string::npos) << message;
  const std::string peft = write_raw(
      "peft.safetensors",
      {{"text_encoder_2.text_model.encoder.layers.7.self_attn.q_proj.lora_A.weight", torch::zeros({4, 48})},
       {"text_encoder_2.text_model.encoder.layers.7.self_attn.q_proj.lora_B.weight", torch::zeros({48, 4})}});
  message = read_error(peft);
  EXPECT_NE(message.find("no Linear or Conv2d of the text_encoder_2 has the module path "
                         "'text_model.encoder.layers.7.self_attn.q_proj' (closest: "),
            std::string::npos)
      << message;
}

}  // namespace
}  // namespace sdtrain

// LoRA adapter files without any Python reference: names, targets, the kohya ↔ PEFT round trip,
// PEFT's alpha metadata, merging, LyCORIS' layouts and every refusal (another architecture, NaN,
// incomplete modules), on a tiny SD v1-shaped UNet and text encoder built here.
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

/// The sampling fixture's tiny pipeline shape: two UNet levels (one with cross-attention, a
/// 1×1-conv proj_in as SD v1), a two-layer CLIP.
SdNetworks tiny_networks() {
  UNet2DConditionConfig unet;
  for (int c : {32, 64}) unet.add_block_out_channels(c);
  unet.set_layers_per_block(1);
  unet.set_cross_attention_dim(32);
  unet.add_attention_head_dim(4);
  unet.set_norm_num_groups(16);
  unet.set_sample_size(16);
  unet.add_down_block_types("CrossAttnDownBlock2D");
  unet.add_down_block_types("DownBlock2D");
  unet.add_up_block_types("UpBlock2D");
  unet.add_up_block_types("CrossAttnUpBlock2D");
  ClipTextConfig clip;
  clip.set_vocab_size(1000);
  clip.set_hidden_size(32);
  clip.set_intermediate_size(64);
  clip.set_num_attention_heads(4);
  clip.set_num_hidden_layers(2);
  torch::manual_seed(0);
  SdNetworks networks;
  networks.unet = UNet2DConditionModel(unet);
  networks.text_encoder = ClipTextModel(clip);
  return networks;
}

struct LoraFormatTest : ::testing::Test {
  SdNetworks networks = tiny_networks();
  std::map<std::string, LoraTarget> targets = lora_targets(networks);
  fs::path dir = test::scratch_dir();

  std::string path(const std::string& name) const { return (dir / name).string(); }
  /// `tensors` written as a safetensors file.
  std::string write_raw(const std::string& name, const std::map<std::string, torch::Tensor>& tensors,
                        const std::map<std::string, std::string>& metadata = {}) const {
    return test::write_raw_safetensors(path(name), tensors, metadata);
  }
  std::string read_error(const std::string& file) const { return test::lora_read_error(file, targets); }
  torch::Tensor weight(const std::string& component, const std::string& name) const {
    const torch::nn::Module& module = component == "unet" ? static_cast<const torch::nn::Module&>(*networks.unet)
                                                          : static_cast<const torch::nn::Module&>(*networks.text_encoder);
    return module.named_parameters()[name];
  }
};

void expect_same_tensors(const LoraFile& got, const LoraFile& want) {
  ASSERT_EQ(got.tensors.size(), want.tensors.size());
  for (const auto& [key, tensor] : want.tensors) {
    ASSERT_TRUE(got.tensors.count(key)) << key;
    const torch::Tensor& other = got.tensors.at(key);
    EXPECT_EQ(other.scalar_type(), tensor.scalar_type()) << key;
    EXPECT_EQ(other.sizes(), tensor.sizes()) << key;
    EXPECT_TRUE(torch::equal(other, tensor)) << key;
  }
}

TEST(LoraNames, KohyaNamesReplaceTheDots) {
  EXPECT_EQ(kohya_lora_name("unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"),
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q");
  EXPECT_EQ(kohya_lora_name("text_encoder", "text_model.encoder.layers.0.self_attn.q_proj"),
            "lora_te_text_model_encoder_layers_0_self_attn_q_proj");
  EXPECT_THROW(kohya_lora_name("vae", "encoder.conv_in"), std::invalid_argument);
}

TEST(LoraNames, SpecsTakeAWeightOnlyWhenOneFollowsTheLastColon) {
  auto spec = parse_lora_spec("style.safetensors", "--lora");
  EXPECT_EQ(spec.path, "style.safetensors");
  EXPECT_EQ(spec.weight, 1.0);
  spec = parse_lora_spec("a:b/style.safetensors:0.75", "--lora");
  EXPECT_EQ(spec.path, "a:b/style.safetensors");
  EXPECT_EQ(spec.weight, 0.75);
  spec = parse_lora_spec("style.safetensors:-1e-1", "--lora");
  EXPECT_EQ(spec.weight, -0.1);
  EXPECT_EQ(parse_lora_spec("run:2/style.safetensors", "--lora").path, "run:2/style.safetensors");
  EXPECT_EQ(parse_lora_spec("style:", "--lora").path, "style:");
  EXPECT_THROW(parse_lora_spec(":0.5", "--lora"), ConfigError);
  EXPECT_THROW(parse_lora_spec("style.safetensors:inf", "--lora"), ConfigError);
}

TEST_F(LoraFormatTest, TargetsAreEveryLinearAndConvOfTheUnetAndTextEncoder) {
  std::size_t expected = 0;
  for (auto* network : {static_cast<torch::nn::Module*>(networks.unet.get()),
                        static_cast<torch::nn::Module*>(networks.text_encoder.get())}) {
    for (const auto& module : network->modules(/*include_self=*/false)) {
      expected += module->as<torch::nn::Linear>() || module->as<torch::nn::Conv2d>() ? 1 : 0;
    }
  }
  EXPECT_EQ(targets.size(), expected);
  const LoraTarget& proj_in = targets.at("lora_unet_down_blocks_0_attentions_0_proj_in");
  EXPECT_EQ(proj_in.module_path, "down_blocks.0.attentions.0.proj_in");
  EXPECT_TRUE(proj_in.conv);
  EXPECT_EQ(proj_in.weight_shape, (std::vector<int64_t>{32, 32, 1, 1}));
  EXPECT_EQ(targets.at("lora_unet_down_blocks_0_resnets_0_conv1").weight_shape, (std::vector<int64_t>{32, 32, 3, 3}));
  EXPECT_EQ(targets.at("lora_unet_conv_in").component, "unet");
  const LoraTarget& fc1 = targets.at("lora_te_text_model_encoder_layers_1_mlp_fc1");
  EXPECT_EQ(fc1.component, "text_encoder");
  EXPECT_EQ(fc1.module_path, "text_model.encoder.layers.1.mlp.fc1");
  EXPECT_FALSE(fc1.conv);
  EXPECT_EQ(fc1.weight_shape, (std::vector<int64_t>{64, 32}));
}

TEST_F(LoraFormatTest, KohyaToPeftToKohyaIsBitIdentical) {
  for (const auto dtype : {torch::kFloat32, torch::kFloat16}) {
    SCOPED_TRACE(c10::toString(dtype));
    const std::string tag = dtype == torch::kFloat32 ? "32" : "16";
    const LoraFile original = test::random_lora(targets, 1, 0.1, dtype);
    write_lora_file(original, path("a" + tag + ".safetensors"), LoraFormat::kKohya, targets);
    const LoraFile kohya = read_lora_file(path("a" + tag + ".safetensors"), targets);
    expect_same_tensors(kohya, original);
    EXPECT_EQ(kohya.metadata, original.metadata);
    write_lora_file(kohya, path("b" + tag + ".safetensors"), LoraFormat::kPeft, targets);
    const LoraFile peft = read_lora_file(path("b" + tag + ".safetensors"), targets);
    expect_same_tensors(peft, original);
    EXPECT_EQ(peft.metadata, original.metadata);
    write_lora_file(peft, path("c" + tag + ".safetensors"), LoraFormat::kKohya, targets);
    EXPECT_EQ(read_file(path("c" + tag + ".safetensors")), read_file(path("a" + tag + ".safetensors")));
  }
}

TEST_F(LoraFormatTest, PeftFilesHaveDiffusersKeysAndAlphasInTheHeader) {
  write_lora_file(test::random_lora(targets, 2), path("peft.safetensors"), LoraFormat::kPeft, targets);
  SafetensorsReader reader(path("peft.safetensors"));
  EXPECT_TRUE(reader.contains("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight"));
  EXPECT_TRUE(reader.contains("unet.down_blocks.0.resnets.0.conv1.lora_B.weight"));
  EXPECT_TRUE(reader.contains("text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight"));
  EXPECT_EQ(reader.metadata().at("format"), "pt");
  EXPECT_EQ(reader.metadata().at("ss_network_dim"), "4");
  const auto config = nlohmann::json::parse(reader.metadata().at("lora_adapter_metadata"));
  EXPECT_EQ(config.at("unet.r"), 4);
  EXPECT_EQ(config.at("unet.lora_alpha"), 2);
  EXPECT_EQ(config.at("unet.alpha_pattern").at("^down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k"), 8);
  EXPECT_EQ(config.at("unet.rank_pattern").at("^down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2"), 3);
  EXPECT_EQ(config.at("unet.rank_pattern").at("^down_blocks.0.resnets.0.conv1"), 2);
  EXPECT_EQ(config.at("text_encoder.r"), 4);
  EXPECT_EQ(config.at("text_encoder.alpha_pattern").at("encoder.layers.1.self_attn.k_proj"), 8);
  // diffusers' json.dumps(indent=2, sort_keys=True).
  EXPECT_EQ(reader.metadata().at("lora_adapter_metadata").rfind("{\n  \"text_encoder.alpha_pattern\": {\n", 0), 0u);
}

TEST_F(LoraFormatTest, PeftAlphasFollowDiffusersRules) {
  const std::string a = "unet.down_blocks.0.attentions.0.proj_in.lora_A.weight";
  const std::string b = "unet.down_blocks.0.attentions.0.proj_in.lora_B.weight";
  const std::string te_a = "text_encoder.encoder.layers.0.mlp.fc1.lora_A.weight";  // transformers >= 5.6 names
  const std::string te_b = "text_encoder.encoder.layers.0.mlp.fc1.lora_B.weight";
  const std::map<std::string, torch::Tensor> tensors = {
      {a, torch::ones({4, 32, 1, 1})}, {b, torch::ones({32, 4, 1, 1})}, {te_a, torch::ones({4, 32})}, {te_b, torch::ones({64, 4})}};
  const auto alpha = [&](const LoraFile& lora, const std::string& name) {
    return lora.tensors.at(name + ".alpha").item<double>();
  };
  const std::string unet = "lora_unet_down_blocks_0_attentions_0_proj_in";
  const std::string te = "lora_te_text_model_encoder_layers_0_mlp_fc1";
  // No metadata: alpha = rank, as diffusers loads such files.
  LoraFile lora = read_lora_file(write_raw("plain.safetensors", tensors), targets);
  EXPECT_EQ(alpha(lora, unet), 4.0);
  EXPECT_EQ(alpha(lora, te), 4.0);
  EXPECT_EQ(lora.tensors.at(te + ".lora_down.weight").sizes(), (std::vector<int64_t>{4, 32}));
  // lora_alpha, a pattern, and rsLoRA (scale alpha / sqrt(r) = (alpha · sqrt(r)) / r).
  const std::string metadata = R"({"unet.r": 4, "unet.lora_alpha": 16, "unet.alpha_pattern": {"^down_blocks.0.attentions.0.proj_in": 6},
                                   "text_encoder.r": 4, "text_encoder.lora_alpha": 3, "text_encoder.use_rslora": true})";
  lora = read_lora_file(write_raw("meta.safetensors", tensors, {{"format", "pt"}, {"lora_adapter_metadata", metadata}}), targets);
  EXPECT_EQ(alpha(lora, unet), 6.0);
  EXPECT_EQ(alpha(lora, te), 6.0);
  EXPECT_TRUE(lora.metadata.empty());
  // A rank the metadata contradicts would not load in diffusers either.
  const std::string wrong = R"({"unet.r": 8, "unet.lora_alpha": 8})";
  const std::string message =
      read_error(write_raw("wrong.safetensors", tensors, {{"lora_adapter_metadata", wrong}}));
  EXPECT_NE(message.find(a), std::string::npos) << message;
  EXPECT_NE(message.find("rank 8"), std::string::npos) << message;
}

TEST_F(LoraFormatTest, MissingAlphaIsTheRankAsKohyaLoadsIt) {
  LoraFile lora = test::random_lora(targets, 3);
  LoraFile without = lora;
  for (auto it = without.tensors.begin(); it != without.tensors.end();) {
    it = ends_with(it->first, ".alpha") ? without.tensors.erase(it) : std::next(it);
  }
  write_lora_file(without, path("no_alpha.safetensors"), LoraFormat::kKohya, targets);
  const LoraFile read = read_lora_file(path("no_alpha.safetensors"), targets);
  EXPECT_FALSE(read.tensors.count("lora_unet_down_blocks_0_resnets_0_conv1.alpha"));
  // Merged, it is the adapter with alpha = rank: scale 1.
  for (auto& [key, tensor] : lora.tensors) {
    if (!ends_with(key, ".alpha")) continue;
    const std::string name = key.substr(0, key.size() - 6);
    tensor = torch::scalar_tensor(static_cast<double>(lora.tensors.at(name + ".lora_down.weight").size(0)), torch::kFloat32);
  }
  SdNetworks other = tiny_networks();
  merge_lora(networks, read, 1.0, targets);
  merge_lora(other, lora, 1.0, targets);
  for (const auto& item : other.unet->named_parameters()) {
    EXPECT_TRUE(torch::equal(item.value(), weight("unet", item.key()))) << item.key();
  }
}

TEST_F(LoraFormatTest, MergeAddsTheScaledProductInFloat32) {
  const LoraFile lora = test::random_lora(targets, 4);
  const std::string linear = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k";  // rank 4, alpha 8
  const std::string conv = "down_blocks.0.resnets.0.conv1";                                 // rank 2, alpha 1
  const torch::Tensor linear_before = weight("unet", linear + ".weight").clone();
  const torch::Tensor conv_before = weight("unet", conv + ".weight").clone();
  const torch::Tensor norm_before = weight("unet", "down_blocks.0.resnets.0.norm1.weight").clone();
  merge_lora(networks, lora, -0.5, targets);
  const auto part = [&](const std::string& path, const char* suffix) {
    return lora.tensors.at(kohya_lora_name("unet", path) + suffix);
  };
  const torch::Tensor linear_delta = part(linear, ".lora_up.weight").mm(part(linear, ".lora_down.weight")) * (8.0 / 4 * -0.5);
  EXPECT_TRUE(torch::allclose(weight("unet", linear + ".weight"), linear_before + linear_delta, 1e-6, 1e-7));
  const torch::Tensor conv_delta =
      torch::einsum("or,rihw->oihw", {part(conv, ".lora_up.weight").flatten(1), part(conv, ".lora_down.weight")}) *
      (1.0 / 2 * -0.5);
  EXPECT_TRUE(torch::allclose(weight("unet", conv + ".weight"), conv_before + conv_delta, 1e-6, 1e-7));
  EXPECT_TRUE(torch::equal(weight("unet", "down_blocks.0.resnets.0.norm1.weight"), norm_before));

  // Half-precision weights: float32 arithmetic, cast back once.
  SdNetworks half = tiny_networks();
  half.unet->to(torch::kBFloat16);
  merge_lora(half, lora, -0.5, targets);
  const torch::Tensor merged = half.unet->named_parameters()[linear + ".weight"];
  EXPECT_EQ(merged.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(merged, (linear_before.to(torch::kBFloat16).to(torch::kFloat32) + linear_delta).to(torch::kBFloat16)));
}

TEST_F(LoraFormatTest, BadAdapterChangesNothing) {
  LoraFile lora = test::random_lora(targets, 5);
  lora.tensors["lora_unet_up_blocks_1_resnets_1_conv2.lora_up.weight"].view(-1)[7] = NAN;
  const auto before = weight("unet", "down_blocks.0.resnets.0.conv1.weight").clone();
  EXPECT_THROW(merge_lora(networks, lora, 1.0, targets), FormatError);
  EXPECT_TRUE(torch::equal(weight("unet", "down_blocks.0.resnets.0.conv1.weight"), before));
  EXPECT_THROW(write_lora_file(lora, path("nan.safetensors"), LoraFormat::kKohya, targets), FormatError);
  EXPECT_FALSE(fs::exists(path("nan.safetensors")));
}

TEST_F(LoraFormatTest, RefusesAnAdapterForAnotherArchitectureNamingTheFirstKey) {
  // kohya's SDXL names: LDM blocks for the UNet, two text encoders.
  const std::map<std::string, torch::Tensor> sdxl = {
      {"lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", torch::zeros({4, 768})},
      {"lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", torch::zeros({768, 4})},
      {"lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight", torch::zeros({4, 640})},
      {"lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_up.weight", torch::zeros({640, 4})}};
  std::string message = read_error(write_raw("sdxl.safetensors", sdxl));
  EXPECT_NE(message.find("'lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight'"), std::string::npos)
      << message;
  EXPECT_NE(message.find("SDXL"), std::string::npos) << message;
  EXPECT_NE(message.find("3 more key(s)"), std::string::npos) << message;
  // SD v1's module names, but SD v1's sizes, not this model's.
  const std::map<std::string, torch::Tensor> bigger = {
      {"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight", torch::zeros({4, 320})},
      {"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight", torch::zeros({320, 4})}};
  message = read_error(write_raw("bigger.safetensors", bigger));
  EXPECT_NE(message.find("'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight': shape [4, 320]"),
            std::string::npos)
      << message;
  // A whole model is no adapter.
  std::map<std::string, torch::Tensor> model;
  for (const auto& item : networks.unet->named_parameters()) model[item.key()] = item.value();
  message = read_error(write_raw("model.safetensors", model));
  EXPECT_NE(message.find("'conv_in.bias'"), std::string::npos) << message;
  // DoRA has no LoRA delta.
  LoraFile dora = test::random_lora(targets, 6);
  write_lora_file(dora, path("dora_base.safetensors"), LoraFormat::kKohya, targets);
  std::map<std::string, torch::Tensor> with_scale;
  for (const auto& [key, tensor] : dora.tensors) with_scale[key] = tensor;
  with_scale["lora_unet_conv_in.dora_scale"] = torch::ones({32, 1, 1, 1});
  message = read_error(write_raw("dora.safetensors", with_scale));
  EXPECT_NE(message.find("'lora_unet_conv_in.dora_scale': DoRA"), std::string::npos) << message;
}

TEST_F(LoraFormatTest, RefusesNonFiniteValuesAndIncompleteModulesNamingTheKey) {
  LoraFile lora = test::random_lora(targets, 7);
  write_lora_file(lora, path("good.safetensors"), LoraFormat::kPeft, targets);
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& [key, tensor] : SafetensorsReader(path("good.safetensors")).tensors()) tensors[key] = tensor.clone();
  const std::string nan_key = "unet.up_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj.lora_A.weight";
  ASSERT_TRUE(tensors.count(nan_key));
  tensors[nan_key].view(-1)[3] = NAN;
  std::string message = read_error(write_raw("nan.safetensors", tensors));
  EXPECT_NE(message.find("'" + nan_key + "': holds 1 non-finite value"), std::string::npos) << message;

  std::map<std::string, torch::Tensor> kohya;
  for (const auto& [key, tensor] : lora.tensors) kohya[key] = tensor;
  kohya["lora_te_text_model_encoder_layers_1_mlp_fc2.alpha"] = torch::scalar_tensor(INFINITY);
  message = read_error(write_raw("inf_alpha.safetensors", kohya));
  EXPECT_NE(message.find("'lora_te_text_model_encoder_layers_1_mlp_fc2.alpha': holds 1 non-finite"), std::string::npos)
      << message;
  kohya["lora_te_text_model_encoder_layers_1_mlp_fc2.alpha"] = torch::scalar_tensor(2.0);
  kohya.erase("lora_unet_mid_block_resnets_0_conv1.lora_up.weight");
  message = read_error(write_raw("no_up.safetensors", kohya));
  EXPECT_NE(message.find("'lora_unet_mid_block_resnets_0_conv1.lora_down.weight': has no "
                         "lora_unet_mid_block_resnets_0_conv1.lora_up.weight"),
            std::string::npos)
      << message;
  EXPECT_NE(read_error(path("missing.safetensors")).find("not found"), std::string::npos);
}

TEST_F(LoraFormatTest, ReadsLycorisNamesAndFoldsTuckerConvs) {
  const LoraTarget& conv = targets.at("lora_unet_down_blocks_0_resnets_0_conv2");  // 3x3, 32 → 32
  torch::manual_seed(8);
  const torch::Tensor down = torch::randn({2, 32, 1, 1}), mid = torch::randn({2, 2, 3, 3}), up = torch::randn({32, 2, 1, 1});
  const std::map<std::string, torch::Tensor> tensors = {
      {"lycoris_down_blocks_0_resnets_0_conv2.lora_down.weight", down},
      {"lycoris_down_blocks_0_resnets_0_conv2.lora_mid.weight", mid},
      {"lycoris_down_blocks_0_resnets_0_conv2.lora_up.weight", up},
      {"lycoris_down_blocks_0_resnets_0_conv2.alpha", torch::scalar_tensor(1.0, torch::kFloat16)},
      {"lycoris_encoder_layers_0_self_attn_v_proj.lora_down.weight", torch::randn({4, 32})},
      {"lycoris_encoder_layers_0_self_attn_v_proj.lora_up.weight", torch::randn({32, 4})}};
  const LoraFile lora = read_lora_file(write_raw("lycoris.safetensors", tensors), targets);
  EXPECT_TRUE(lora.tensors.count("lora_te_text_model_encoder_layers_0_self_attn_v_proj.lora_down.weight"));
  const torch::Tensor alpha = lora.tensors.at("lora_unet_down_blocks_0_resnets_0_conv2.alpha");
  EXPECT_EQ(alpha.scalar_type(), torch::kFloat32);
  EXPECT_EQ(alpha.dim(), 0);
  // The folded down gives LyCORIS' Tucker delta: einsum("i j ..., i p, j r -> p r ...", mid, up^T, down).
  const torch::Tensor folded = lora.tensors.at("lora_unet_down_blocks_0_resnets_0_conv2.lora_down.weight");
  EXPECT_EQ(folded.sizes(), (std::vector<int64_t>{2, 32, 3, 3}));
  const torch::Tensor tucker = torch::einsum("ijhw,ip,jr->prhw", {mid, up.flatten(1).t(), down.flatten(1)});
  const torch::Tensor ours = torch::einsum("or,rihw->oihw", {lora.tensors.at("lora_unet_down_blocks_0_resnets_0_conv2.lora_up.weight").flatten(1), folded});
  EXPECT_TRUE(torch::allclose(ours, tucker, 1e-5, 1e-6));
  EXPECT_EQ(conv.weight_shape, (std::vector<int64_t>{32, 32, 3, 3}));
}

TEST_F(LoraFormatTest, WritingNeverOverwrites) {
  const LoraFile lora = test::random_lora(targets, 9);
  write_lora_file(lora, path("a.safetensors"), LoraFormat::kKohya, targets);
  const std::string before = read_file(path("a.safetensors"));
  EXPECT_THROW(write_lora_file(lora, path("a.safetensors"), LoraFormat::kPeft, targets), FormatError);
  EXPECT_EQ(read_file(path("a.safetensors")), before);
}

}  // namespace
}  // namespace sdtrain

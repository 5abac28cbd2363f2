// OpenCLIP's text transformer names (SD 2.x's cond_stage_model.model.*) <-> transformers' CLIP
// names: the pairs, the fused q/k/v projection, the transposed projection, refusals, and what an
// SD 2 file's reading keeps aside. diffusers' own conversion checks the same names on a whole
// pipeline in sd2_single_file_test.cpp.
#include <gtest/gtest.h>

#include "plugins/models/stable_diffusion/weights/sd_open_clip_names.h"
#include "plugins/models/stable_diffusion/weights/sd_tokenizer_files.h"
#include "plugins/models/stable_diffusion/weights/sd_weights.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

constexpr int64_t kWidth = 8;

/// One OpenCLIP layer's tensors, random, under "transformer.resblocks.<i>.".
void add_layer(NamedTensors& state, int i) {
  const std::string p = "transformer.resblocks." + std::to_string(i) + ".";
  state[p + "ln_1.weight"] = torch::randn({kWidth});
  state[p + "ln_1.bias"] = torch::randn({kWidth});
  state[p + "attn.in_proj_weight"] = torch::randn({3 * kWidth, kWidth});
  state[p + "attn.in_proj_bias"] = torch::randn({3 * kWidth});
  state[p + "attn.out_proj.weight"] = torch::randn({kWidth, kWidth});
  state[p + "attn.out_proj.bias"] = torch::randn({kWidth});
  state[p + "ln_2.weight"] = torch::randn({kWidth});
  state[p + "ln_2.bias"] = torch::randn({kWidth});
  state[p + "mlp.c_fc.weight"] = torch::randn({4 * kWidth, kWidth});
  state[p + "mlp.c_fc.bias"] = torch::randn({4 * kWidth});
  state[p + "mlp.c_proj.weight"] = torch::randn({kWidth, 4 * kWidth});
  state[p + "mlp.c_proj.bias"] = torch::randn({kWidth});
}

/// An OpenCLIP text model of `layers` layers with its projection and logit scale.
NamedTensors open_clip_model(int layers) {
  torch::manual_seed(0);
  NamedTensors state = {{"token_embedding.weight", torch::randn({49408, kWidth})},
                        {"positional_embedding", torch::randn({77, kWidth})},
                        {"ln_final.weight", torch::randn({kWidth})},
                        {"ln_final.bias", torch::randn({kWidth})},
                        {"text_projection", torch::randn({kWidth, 4})},
                        {"logit_scale", torch::tensor(4.6f)}};
  for (int i = 0; i < layers; ++i) add_layer(state, i);
  return state;
}

TEST(OpenClipNames, PairsAndTheFusedProjectionInQkvOrder) {
  const NamedTensors state = open_clip_model(1);
  RenameResult r = open_clip_to_transformers(state);
  EXPECT_EQ(r.unmatched, std::vector<std::string>{"logit_scale"});
  const torch::Tensor& fused = state.at("transformer.resblocks.0.attn.in_proj_weight");
  const std::string layer = "text_model.encoder.layers.0.";
  EXPECT_TRUE(torch::equal(r.tensors.at(layer + "self_attn.q_proj.weight"), fused.slice(0, 0, kWidth)));
  EXPECT_TRUE(torch::equal(r.tensors.at(layer + "self_attn.k_proj.weight"), fused.slice(0, kWidth, 2 * kWidth)));
  EXPECT_TRUE(torch::equal(r.tensors.at(layer + "self_attn.v_proj.weight"), fused.slice(0, 2 * kWidth)));
  EXPECT_TRUE(torch::equal(r.tensors.at(layer + "self_attn.v_proj.bias"),
                           state.at("transformer.resblocks.0.attn.in_proj_bias").slice(0, 2 * kWidth)));
  EXPECT_TRUE(torch::equal(r.tensors.at(layer + "mlp.fc1.weight"), state.at("transformer.resblocks.0.mlp.c_fc.weight")));
  EXPECT_TRUE(torch::equal(r.tensors.at(layer + "mlp.fc2.bias"), state.at("transformer.resblocks.0.mlp.c_proj.bias")));
  EXPECT_TRUE(torch::equal(r.tensors.at(layer + "layer_norm2.weight"), state.at("transformer.resblocks.0.ln_2.weight")));
  EXPECT_TRUE(torch::equal(r.tensors.at(layer + "self_attn.out_proj.weight"),
                           state.at("transformer.resblocks.0.attn.out_proj.weight")));
  EXPECT_TRUE(torch::equal(r.tensors.at("text_model.embeddings.position_embedding.weight"),
                           state.at("positional_embedding")));
  EXPECT_TRUE(torch::equal(r.tensors.at("text_model.final_layer_norm.bias"), state.at("ln_final.bias")));
  // CLIPTextModelWithProjection's Linear holds the transpose of OpenCLIP's matrix.
  EXPECT_TRUE(torch::equal(r.tensors.at("text_projection.weight"), state.at("text_projection").t()));
  // Embeddings, final norm and projection: 5; a layer: 12 tensors with the fused pair split in 6.
  EXPECT_EQ(r.tensors.size(), 5u + 16u);
}

TEST(OpenClipNames, RoundTripIsBitIdentical) {
  NamedTensors state = open_clip_model(2);
  state.erase("logit_scale");
  RenameResult forward = open_clip_to_transformers(state);
  ASSERT_TRUE(forward.unmatched.empty());
  forward.tensors["text_model.embeddings.position_ids"] = torch::arange(77).unsqueeze(0);  // dropped on the way back
  RenameResult back = transformers_to_open_clip(forward.tensors);
  EXPECT_TRUE(back.unmatched.empty());
  ASSERT_EQ(back.tensors.size(), state.size());
  for (const auto& [name, tensor] : state) {
    ASSERT_TRUE(back.tensors.count(name)) << name;
    EXPECT_TRUE(torch::equal(back.tensors.at(name), tensor)) << name;
    EXPECT_TRUE(back.tensors.at(name).is_contiguous()) << name;
  }
}

TEST(OpenClipNames, RefusesAFusedProjectionOfTheWrongShapeAndAMissingPart) {
  NamedTensors bad = {{"transformer.resblocks.0.attn.in_proj_weight", torch::randn({2 * kWidth, kWidth})}};
  try {
    open_clip_to_transformers(bad);
    FAIL() << "expected FormatError";
  } catch (const FormatError& error) {
    EXPECT_NE(std::string(error.what()).find("transformer.resblocks.0.attn.in_proj_weight"), std::string::npos);
  }
  RenameResult split = open_clip_to_transformers(open_clip_model(1));
  split.tensors.erase("text_model.encoder.layers.0.self_attn.k_proj.weight");
  try {
    transformers_to_open_clip(split.tensors);
    FAIL() << "expected FormatError";
  } catch (const FormatError& error) {
    EXPECT_NE(std::string(error.what()).find("layers.0.self_attn.k_proj.weight"), std::string::npos);
  }
  RenameResult unknown = transformers_to_open_clip({{"text_model.something_else.weight", torch::zeros({1})}});
  EXPECT_EQ(unknown.unmatched, std::vector<std::string>{"text_model.something_else.weight"});
}

/// An SD 2 file's text encoder as the whole state dict holds it (no UNet or VAE: reported missing).
NamedTensors sd2_state(int layers) {
  NamedTensors state;
  for (const auto& [name, tensor] : open_clip_model(layers)) state["cond_stage_model.model." + name] = tensor;
  return state;
}

TEST(OpenClipNames, Sd2FileKeepsWhatItsTextEncoderNeverRunsAsideAndWritesItBack) {
  const NamedTensors state = sd2_state(24);  // ViT-H's depth
  WeightIssues issues;
  const SdWeights weights = sd_weights_from_original(state, false, "sd2.ckpt", &issues);
  EXPECT_TRUE(issues.unexpected.empty()) << issues.describe();
  // 23 layers, as diffusers' SD 2 text encoder: the penultimate layer's output is the context.
  EXPECT_TRUE(weights.text_encoder.count("text_model.encoder.layers.22.mlp.fc2.bias"));
  EXPECT_FALSE(weights.text_encoder.count("text_model.encoder.layers.23.mlp.fc2.bias"));
  EXPECT_FALSE(weights.text_encoder.count("text_projection.weight"));
  for (const char* aside : {"cond_stage_model.model.transformer.resblocks.23.attn.in_proj_weight",
                            "cond_stage_model.model.text_projection", "cond_stage_model.model.logit_scale"}) {
    EXPECT_TRUE(weights.extras.count(aside)) << aside;
  }
  // The family shows in the config (gelu, which no shape tells) and in the tokenizer's padding.
  EXPECT_TRUE(text_encoder_is_open_clip(weights));
  EXPECT_NE(weights.configs.at("text_encoder").find("\"hidden_act\": \"gelu\""), std::string::npos);
  EXPECT_EQ(default_pad_token(weights), "!");
  EXPECT_EQ(weights_tokenizer(weights).pad_id(), 0);

  const NamedTensors back = sd_weights_to_original(weights);
  ASSERT_EQ(back.size(), state.size());
  for (const auto& [name, tensor] : state) {
    ASSERT_TRUE(back.count(name)) << name;
    EXPECT_TRUE(torch::equal(back.at(name), tensor)) << name;
  }
}

TEST(OpenClipNames, SdV1FileStaysClip) {
  const NamedTensors state = {{"cond_stage_model.transformer.text_model.final_layer_norm.bias", torch::randn({kWidth})}};
  const SdWeights weights = sd_weights_from_original(state, false, "v1.ckpt", nullptr);
  EXPECT_FALSE(text_encoder_is_open_clip(weights));
  EXPECT_EQ(default_pad_token(weights), "<|endoftext|>");
  EXPECT_TRUE(sd_weights_to_original(weights).count("cond_stage_model.transformer.text_model.final_layer_norm.bias"));
}

}  // namespace
}  // namespace sdtrain

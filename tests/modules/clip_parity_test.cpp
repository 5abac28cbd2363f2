// CLIPTextModel against transformers: keys, last hidden state, pooled output, hidden states,
// padding mask, checkpointing.
#include <gtest/gtest.h>

#include "plugins/models/stable_diffusion/modules/clip_text_model.h"
#include "sdtrain/errors.h"
#include "tests/modules/module_test_util.h"

namespace sdtrain {
namespace {

using testing::expect_close;
using testing::fixture_path;

constexpr double kTol = 1e-4;

class ClipParityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = testing::read_json_config<ClipTextConfig>(fixture_path("sd_modules", "clip_config.json"));
    weights_ = testing::read_tensor_file(fixture_path("sd_modules", "clip_weights.pt"));
    io_ = testing::read_tensor_file(fixture_path("sd_modules", "clip_io.pt"));
    clip_ = ClipTextModel(config_);
    load_state_dict_strict(*clip_, weights_, "clip_weights.pt");
    clip_->eval();
  }
  ClipTextConfig config_;
  TensorMap weights_, io_;
  ClipTextModel clip_{nullptr};
};

TEST_F(ClipParityTest, KeysEqualTransformersStateDict) {
  auto own = module_state_dict(*clip_);
  EXPECT_EQ(own.size(), weights_.size());
  EXPECT_TRUE(own.count("text_model.encoder.layers.0.self_attn.q_proj.weight"));
  EXPECT_TRUE(own.count("text_model.embeddings.position_embedding.weight"));
  EXPECT_TRUE(own.count("text_model.final_layer_norm.bias"));
}

TEST_F(ClipParityTest, HiddenStatesMatchTransformers) {
  torch::NoGradGuard no_grad;
  auto out = clip_->forward(io_["input_ids"], {}, /*output_hidden_states=*/true);
  expect_close(out.last_hidden_state, io_["last_hidden_state"], kTol, "last_hidden_state");
  expect_close(out.pooled_output, io_["pooled_output"], kTol, "pooled_output");
  ASSERT_EQ(out.hidden_states.size(), static_cast<size_t>(config_.num_hidden_layers() + 1));
  expect_close(out.hidden_states[out.hidden_states.size() - 2], io_["penultimate"], kTol, "penultimate");
  auto masked = clip_->forward(io_["input_ids"], io_["attention_mask"]);
  expect_close(masked.last_hidden_state, io_["masked_last_hidden_state"], kTol, "masked");
}

TEST_F(ClipParityTest, GradientCheckpointingGivesIdenticalGradients) {
  ClipTextConfig c = config_;
  c.set_gradient_checkpointing(true);
  ClipTextModel ckpt(c);
  load_state_dict_strict(*ckpt, weights_);
  clip_->train();
  ckpt->train();
  auto loss_a = clip_->forward(io_["input_ids"]).last_hidden_state.pow(2).mean();
  auto loss_b = ckpt->forward(io_["input_ids"]).last_hidden_state.pow(2).mean();
  loss_a.backward();
  loss_b.backward();
  EXPECT_EQ(loss_a.item<double>(), loss_b.item<double>());
  auto b = ckpt->named_parameters();
  for (const auto& p : clip_->named_parameters()) {
    EXPECT_TRUE(torch::allclose(b[p.key()].grad(), p.value().grad(), 1e-6, 1e-7)) << p.key();
  }
}

// CLIPTextModelWithProjection as SDXL's second text encoder (gelu, OpenCLIP's 0-padding): the
// penultimate hidden state SDXL conditions on and the projected pooled output (text_embeds).
TEST(ClipProjectionParityTest, PenultimateAndTextEmbedsMatchTransformers) {
  const auto config =
      testing::read_json_config<ClipTextConfig>(fixture_path("sd_modules", "clip_projection_config.json"));
  auto weights = testing::read_tensor_file(fixture_path("sd_modules", "clip_projection_weights.pt"));
  const auto io = testing::read_tensor_file(fixture_path("sd_modules", "clip_projection_io.pt"));
  ClipTextModel clip(config);
  EXPECT_TRUE(module_state_dict(*clip).count("text_projection.weight"));
  load_state_dict_strict(*clip, weights, "clip_projection_weights.pt");
  clip->eval();
  torch::NoGradGuard no_grad;
  const auto out = clip->forward(io.at("input_ids"), {}, /*output_hidden_states=*/true);
  expect_close(out.last_hidden_state, io.at("last_hidden_state"), kTol, "last_hidden_state");
  expect_close(out.hidden_states[out.hidden_states.size() - 2], io.at("penultimate"), kTol, "penultimate");
  expect_close(out.text_embeds, io.at("text_embeds"), kTol, "text_embeds");
}

TEST(ClipConfigTest, DefaultsAreSdV1AndBadActivationIsRejected) {
  ClipTextConfig config;
  EXPECT_EQ(config.vocab_size(), 49408);
  EXPECT_EQ(config.hidden_size(), 768);
  EXPECT_EQ(config.max_position_embeddings(), 77);
  config.set_hidden_act("relu");
  try {
    ClipTextModel m(config);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("hidden_act"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sdtrain

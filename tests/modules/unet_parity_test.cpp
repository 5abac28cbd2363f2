// UNet2DConditionModel against diffusers: keys, forward (tensor / scalar / fractional
// timesteps, odd latent sizes), every parameter gradient, gradient checkpointing, channels-last.
#include <gtest/gtest.h>

#include "plugins/models/stable_diffusion/modules/module_config.h"
#include "plugins/models/stable_diffusion/modules/unet_2d_condition_model.h"
#include "sdtrain/errors.h"
#include "tests/modules/module_test_util.h"

namespace sdtrain {
namespace {

using testing::expect_close;
using testing::fixture_path;

constexpr double kTol = 1e-4;

class UNetParityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = testing::read_unet_config(fixture_path("sd_modules", "unet_config.json"));
    weights_ = testing::read_tensor_file(fixture_path("sd_modules", "unet_weights.pt"));
    io_ = testing::read_tensor_file(fixture_path("sd_modules", "unet_io.pt"));
  }
  UNet2DConditionModel build(bool checkpointing = false) {
    UNet2DConditionConfig config = config_;
    config.set_gradient_checkpointing(checkpointing);
    UNet2DConditionModel unet(config);
    load_state_dict_strict(*unet, weights_, "unet_weights.pt");
    return unet;
  }
  TensorMap loss_gradients(UNet2DConditionModel& unet, torch::Tensor* loss_out) {
    unet->train();
    unet->zero_grad();
    auto out = unet->forward(io_["sample"], io_["timestep"], io_["encoder_hidden_states"]);
    auto loss = torch::mse_loss(out, io_["target"]);
    loss.backward();
    if (loss_out) *loss_out = loss.detach();
    TensorMap grads;
    for (const auto& p : unet->named_parameters()) {
      EXPECT_TRUE(p.value().grad().defined()) << "no gradient for " << p.key();
      if (p.value().grad().defined()) grads[p.key()] = p.value().grad().clone();
    }
    return grads;
  }
  UNet2DConditionConfig config_;
  TensorMap weights_, io_;
};

TEST_F(UNetParityTest, KeysEqualDiffusersStateDict) {
  auto unet = build();
  auto own = module_state_dict(*unet);
  ASSERT_EQ(own.size(), weights_.size());
  for (const auto& [name, t] : weights_) EXPECT_TRUE(own.count(name)) << name;
  EXPECT_TRUE(own.count("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"));
  EXPECT_TRUE(own.count("mid_block.resnets.0.norm1.weight"));
  EXPECT_TRUE(own.count("up_blocks.1.attentions.2.transformer_blocks.0.ff.net.0.proj.weight"));
}

TEST_F(UNetParityTest, ForwardMatchesDiffusers) {
  auto unet = build();
  unet->eval();
  torch::NoGradGuard no_grad;
  const auto& x = io_["sample"];
  const auto& ctx = io_["encoder_hidden_states"];
  expect_close(unet->forward(x, io_["timestep"], ctx), io_["output"], kTol, "output");
  expect_close(unet->forward(x, torch::tensor(500), ctx), io_["output_scalar"], kTol, "scalar timestep");
  expect_close(unet->forward(x, torch::tensor({10.5f, 980.25f}), ctx), io_["output_float_t"], kTol,
               "fractional timesteps");
  expect_close(unet->forward(io_["odd_sample"], torch::tensor({3}), ctx.slice(0, 0, 1)), io_["output_odd"], kTol,
               "odd latent size 7x9");
}

TEST_F(UNetParityTest, GradientsMatchDiffusers) {
  auto unet = build();
  auto ref = testing::read_tensor_file(fixture_path("sd_modules", "unet_grads.pt"));
  torch::Tensor loss;
  auto grads = loss_gradients(unet, &loss);
  expect_close(loss, io_["loss"], kTol, "loss");
  ASSERT_EQ(grads.size(), ref.size());
  for (const auto& [name, g] : ref) {
    ASSERT_TRUE(grads.count(name)) << name;
    expect_close(grads[name], g, 1e-3, "grad " + name);
  }
}

TEST_F(UNetParityTest, GradientCheckpointingGivesIdenticalOutputsAndGradients) {
  auto plain = build(false);
  auto ckpt = build(true);
  ASSERT_TRUE(ckpt->gradient_checkpointing());
  torch::Tensor loss_plain, loss_ckpt;
  auto g_plain = loss_gradients(plain, &loss_plain);
  auto g_ckpt = loss_gradients(ckpt, &loss_ckpt);
  EXPECT_EQ(loss_plain.item<double>(), loss_ckpt.item<double>());
  for (const auto& [name, g] : g_plain) {
    ASSERT_TRUE(g_ckpt[name].defined()) << name;
    EXPECT_TRUE(torch::allclose(g_ckpt[name], g, 1e-6, 1e-7)) << name;
  }
  // Input gradients flow through checkpointed blocks too.
  auto x = io_["sample"].clone().requires_grad_(true);
  ckpt->forward(x, io_["timestep"], io_["encoder_hidden_states"]).sum().backward();
  auto x2 = io_["sample"].clone().requires_grad_(true);
  plain->forward(x2, io_["timestep"], io_["encoder_hidden_states"]).sum().backward();
  // Same math; only the accumulation order of the skip-connection gradients differs.
  EXPECT_LE(testing::relative_max_diff(x.grad(), x2.grad()), 1e-5);
}

TEST_F(UNetParityTest, ChannelsLastMatches) {
  auto unet = build();
  unet->eval();
  unet->set_channels_last(true);
  EXPECT_TRUE(unet->named_parameters()["conv_in.weight"].is_contiguous(c10::MemoryFormat::ChannelsLast));
  torch::NoGradGuard no_grad;
  auto out = unet->forward(io_["sample"], io_["timestep"], io_["encoder_hidden_states"]);
  EXPECT_TRUE(out.is_contiguous());
  expect_close(out, io_["output"], kTol, "channels-last output");
}

TEST_F(UNetParityTest, StrictLoadNamesMissingUnexpectedAndMismatchedKeys) {
  UNet2DConditionModel unet(config_);
  TensorMap bad = weights_;
  bad.erase("conv_in.weight");
  bad["not_a_key.weight"] = torch::zeros({1});
  bad["conv_out.bias"] = torch::zeros({5});
  try {
    load_state_dict_strict(*unet, bad, "bad.pt");
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bad.pt"), std::string::npos) << msg;
    EXPECT_NE(msg.find("missing: conv_in.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unexpected: not_a_key.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("mismatched: conv_out.bias"), std::string::npos) << msg;
  }
}

TEST(UNetConfigTest, DefaultIsStableDiffusionV1AndErrorsNameTheField) {
  UNet2DConditionConfig config;
  EXPECT_EQ(config.cross_attention_dim(), 768);
  EXPECT_EQ(resolve_unet_layout(config).heads, std::vector<int64_t>(4, 8));
  config.add_block_out_channels(32);
  config.add_block_out_channels(60);  // not a multiple of 32 groups
  try {
    UNet2DConditionModel unet(config);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("block_out_channels"), std::string::npos) << e.what();
  }
  UNet2DConditionConfig wrong_type;
  wrong_type.add_down_block_types("AttnDownBlock2D");
  EXPECT_THROW(UNet2DConditionModel{wrong_type}, ConfigError);
}

}  // namespace
}  // namespace sdtrain

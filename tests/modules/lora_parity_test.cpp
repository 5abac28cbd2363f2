// LoRA / LoCon adapters against diffusers + peft: kohya's default layer selection, forward
// outputs and adapter gradients of a tiny UNet and CLIP text encoder carrying the same adapter
// weights (make_lora_fixtures.py), with and without gradient checkpointing; option errors.
#include <gtest/gtest.h>

#include <set>

#include "plugins/models/stable_diffusion/modules/clip_text_model.h"
#include "plugins/models/stable_diffusion/modules/lora_network.h"
#include "plugins/models/stable_diffusion/modules/state_dict_loader.h"
#include "plugins/models/stable_diffusion/modules/unet_2d_condition_model.h"
#include "sdtrain/errors.h"
#include "tests/modules/module_test_util.h"

namespace sdtrain {
namespace {

using testing::expect_close;
using testing::fixture_path;

constexpr double kTol = 1e-5;

std::string fixture(const std::string& file) { return fixture_path("sd_lora", file); }

/// The fixture's adapter options: rank 4 alpha 2 on Linear / 1x1, LoCon rank 2 alpha 4.
LoraOptions fixture_options() {
  LoraOptions options;
  options.set_rank(4);
  options.set_alpha(2);
  options.set_conv_rank(2);
  options.set_conv_alpha(4);
  return options;
}

UNet2DConditionModel fixture_unet(bool checkpointing) {
  auto config = testing::read_unet_config(fixture("lora_unet_config.json"));
  config.set_gradient_checkpointing(checkpointing);
  UNet2DConditionModel unet(config);
  load_state_dict_strict(*unet, testing::read_tensor_file(fixture("lora_unet_weights.pt")), "lora_unet_weights.pt");
  for (auto& p : unet->parameters()) p.set_requires_grad(false);
  return unet;
}

/// The networks LoraNetwork wraps: `unet`, and `text_encoder` when given.
SdNetworks networks_of(const UNet2DConditionModel& unet, const ClipTextModel& text_encoder = ClipTextModel{nullptr}) {
  SdNetworks networks;
  networks.unet = unet;
  networks.text_encoder = text_encoder;
  return networks;
}

/// Copies the fixture's adapter weights into `lora` and checks that both hold the same adapters:
/// the same names (the layer selection equals kohya's), shapes and alphas.
void load_adapters(LoraNetwork& lora, const std::string& file) {
  TensorMap expected = testing::read_tensor_file(fixture(file));
  std::set<std::string> ours;
  torch::NoGradGuard no_grad;
  for (const auto& item : lora->named_parameters()) {
    ours.insert(item.key());
    ASSERT_TRUE(expected.count(item.key())) << "sdtrain wraps a layer peft/kohya does not: " << item.key();
    ASSERT_EQ(item.value().sizes(), expected.at(item.key()).sizes()) << item.key();
    item.value().copy_(expected.at(item.key()));
  }
  for (const auto& item : lora->named_buffers()) {
    ours.insert(item.key());
    ASSERT_TRUE(expected.count(item.key())) << item.key();
    EXPECT_EQ(item.value().item<float>(), expected.at(item.key()).item<float>()) << item.key();
  }
  for (const auto& [name, tensor] : expected) EXPECT_TRUE(ours.count(name)) << "sdtrain does not wrap " << name;
}

void expect_adapter_grads(LoraNetwork& lora, const std::string& file, const std::string& prefix) {
  const TensorMap grads = testing::read_tensor_file(fixture(file));
  int64_t compared = 0;
  for (const auto& item : lora->named_parameters()) {
    if (item.key().rfind(prefix, 0) != 0) continue;
    ASSERT_TRUE(grads.count(item.key())) << item.key();
    expect_close(item.value().grad(), grads.at(item.key()), kTol, "grad of " + item.key());
    ++compared;
  }
  EXPECT_EQ(compared, static_cast<int64_t>(grads.size()));
}

class LoraUnetParity : public ::testing::TestWithParam<bool> {};

TEST_P(LoraUnetParity, ForwardAndAdapterGradientsEqualPeft) {
  UNet2DConditionModel unet = fixture_unet(/*checkpointing=*/GetParam());
  LoraNetwork lora(fixture_options(), networks_of(unet));
  load_adapters(lora, "lora_unet_adapters.pt");
  const TensorMap io = testing::read_tensor_file(fixture("lora_unet_io.pt"));
  unet->train();
  lora->train();
  const torch::Tensor out = unet->forward(io.at("sample"), io.at("timestep"), io.at("encoder_hidden_states"));
  expect_close(out, io.at("output"), kTol, "UNet output with LoRA/LoCon");
  const torch::Tensor loss = torch::mse_loss(out, io.at("target"));
  loss.backward();
  expect_adapter_grads(lora, "lora_unet_grads.pt", "lora_unet_");
  for (const auto& p : unet->parameters()) EXPECT_FALSE(p.grad().defined()) << "a frozen base weight got a gradient";
}

INSTANTIATE_TEST_SUITE_P(GradientCheckpointing, LoraUnetParity, ::testing::Values(false, true));

TEST(LoraParity, TextEncoderForwardAndGradientsEqualPeft) {
  UNet2DConditionModel unet = fixture_unet(false);
  ClipTextModel clip(testing::read_json_config<ClipTextConfig>(fixture("lora_clip_config.json")));
  load_state_dict_strict(*clip, testing::read_tensor_file(fixture("lora_clip_weights.pt")), "lora_clip_weights.pt");
  for (auto& p : clip->parameters()) p.set_requires_grad(false);
  LoraOptions options = fixture_options();
  options.set_text_encoder(true);
  options.add_unet_targets("attn2\\.to_k$");  // the UNet part is not compared here
  LoraNetwork lora(options, networks_of(unet, clip));
  TensorMap adapters = testing::read_tensor_file(fixture("lora_clip_adapters.pt"));
  torch::NoGradGuard no_grad_copy;
  for (const auto& item : lora->named_parameters()) {
    if (item.key().rfind("lora_te_", 0) != 0) continue;
    ASSERT_TRUE(adapters.count(item.key())) << item.key();
    item.value().copy_(adapters.at(item.key()));
  }
  int64_t te_tensors = 0;
  for (const auto& item : lora->named_parameters()) te_tensors += item.key().rfind("lora_te_", 0) == 0;
  EXPECT_EQ(te_tensors * 3 / 2, static_cast<int64_t>(adapters.size())) << "the text-encoder selection differs from kohya's";
  {
    torch::AutoGradMode grad_on(true);
    const TensorMap io = testing::read_tensor_file(fixture("lora_clip_io.pt"));
    const torch::Tensor hidden = clip->forward(io.at("input_ids")).last_hidden_state;
    expect_close(hidden, io.at("last_hidden_state"), kTol, "text encoder output with LoRA");
    (hidden * io.at("output_weights")).sum().backward();
  }
  expect_adapter_grads(lora, "lora_clip_grads.pt", "lora_te_");
}

// With kohya's dropouts on, a checkpointed block's recompute draws the masks its forward drew
// (the generators' states are restored), so the adapter gradients equal the plain run's.
TEST(LoraParity, DropoutUnderGradientCheckpointingRecomputesTheSameMasks) {
  const TensorMap io = testing::read_tensor_file(fixture("lora_unet_io.pt"));
  LoraOptions options = fixture_options();
  options.set_dropout(0.3);
  options.set_rank_dropout(0.2);
  options.set_module_dropout(0.1);
  std::vector<TensorMap> grads;
  for (const bool checkpointing : {false, true}) {
    UNet2DConditionModel unet = fixture_unet(checkpointing);
    LoraNetwork lora(options, networks_of(unet));
    load_adapters(lora, "lora_unet_adapters.pt");
    unet->train();
    lora->train();
    torch::manual_seed(99);
    const torch::Tensor out = unet->forward(io.at("sample"), io.at("timestep"), io.at("encoder_hidden_states"));
    torch::mse_loss(out, io.at("target")).backward();
    TensorMap g;
    // A module skipped by module dropout has no gradient at all; the recompute must skip it too.
    for (const auto& item : lora->named_parameters()) {
      const torch::Tensor grad = item.value().grad();
      g.emplace(item.key(), grad.defined() ? grad.clone() : torch::Tensor());
    }
    grads.push_back(std::move(g));
  }
  int64_t differing_from_zero = 0;
  int64_t skipped = 0;
  for (const auto& [name, plain] : grads[0]) {
    ASSERT_EQ(grads[1].at(name).defined(), plain.defined()) << name;
    if (!plain.defined()) {
      ++skipped;
      continue;
    }
    expect_close(grads[1].at(name), plain, kTol, "checkpointed grad of " + name);
    differing_from_zero += plain.abs().sum().item<double>() > 0;
  }
  EXPECT_GT(differing_from_zero, 0);
  EXPECT_GT(skipped, 0) << "module dropout 0.1 over ~40 adapters skipped none (seed 99)";
}

TEST(LoraParity, DetachingRestoresTheBaseNetwork) {
  UNet2DConditionModel unet = fixture_unet(false);
  const TensorMap io = testing::read_tensor_file(fixture("lora_unet_io.pt"));
  torch::NoGradGuard no_grad;
  const torch::Tensor base = unet->forward(io.at("sample"), io.at("timestep"), io.at("encoder_hidden_states"));
  {
    LoraNetwork lora(fixture_options(), networks_of(unet));
    // Freshly initialised adapters (up = 0) leave the output unchanged, exactly.
    const torch::Tensor fresh = unet->forward(io.at("sample"), io.at("timestep"), io.at("encoder_hidden_states"));
    EXPECT_TRUE(torch::equal(fresh, base));
    load_adapters(lora, "lora_unet_adapters.pt");
    const torch::Tensor adapted = unet->forward(io.at("sample"), io.at("timestep"), io.at("encoder_hidden_states"));
    EXPECT_FALSE(torch::allclose(adapted, base));
  }
  const torch::Tensor after = unet->forward(io.at("sample"), io.at("timestep"), io.at("encoder_hidden_states"));
  EXPECT_TRUE(torch::equal(after, base));
}

TEST(LoraOptionsErrors, RankAndPatternsAreChecked) {
  UNet2DConditionModel unet = fixture_unet(false);
  auto expect_error = [&](const LoraOptions& options, const std::string& needle) {
    try {
      LoraNetwork lora(options, networks_of(unet));
      ADD_FAILURE() << "no error for " << options.ShortDebugString();
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  LoraOptions options = fixture_options();
  options.set_rank(0);
  expect_error(options, "adapter.lora.rank: must be > 0");
  options = fixture_options();
  options.set_dropout(1.0);
  expect_error(options, "adapter.lora.dropout: must be in [0, 1)");
  options = fixture_options();
  options.add_unet_targets("attn1\\.to_qq$");
  // A pattern matching nothing names the layer paths closest to it.
  expect_error(options, "'attn1\\.to_qq$' matches no Linear or Conv2d layer of the unet");
  expect_error(options, "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q");
  options = fixture_options();
  options.add_unet_targets("(unclosed");
  expect_error(options, "is not a regular expression");
  options = fixture_options();
  options.add_text_encoder_targets("q_proj");
  expect_error(options, "adapter.lora.text_encoder is off");
}

}  // namespace
}  // namespace sdtrain

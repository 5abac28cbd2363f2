// AutoencoderKL against diffusers: keys, encode (mean / logvar / sample with given noise and
// with a seeded generator), decode, and checkpointing equivalence.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include "plugins/models/stable_diffusion/modules/autoencoder_kl.h"
#include "tests/modules/module_test_util.h"

namespace sdtrain {
namespace {

using testing::expect_close;
using testing::fixture_path;

constexpr double kTol = 1e-4;

class VaeParityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = testing::read_json_config<AutoencoderKLConfig>(fixture_path("sd_modules", "vae_config.json"));
    weights_ = testing::read_tensor_file(fixture_path("sd_modules", "vae_weights.pt"));
    io_ = testing::read_tensor_file(fixture_path("sd_modules", "vae_io.pt"));
    vae_ = AutoencoderKL(config_);
    load_state_dict_strict(*vae_, weights_, "vae_weights.pt");
    vae_->eval();
  }
  AutoencoderKLConfig config_;
  TensorMap weights_, io_;
  AutoencoderKL vae_{nullptr};
};

TEST_F(VaeParityTest, KeysEqualDiffusersStateDict) {
  auto own = module_state_dict(*vae_);
  EXPECT_EQ(own.size(), weights_.size());
  EXPECT_TRUE(own.count("encoder.mid_block.attentions.0.to_q.weight"));
  EXPECT_TRUE(own.count("encoder.mid_block.attentions.0.group_norm.weight"));
  EXPECT_TRUE(own.count("encoder.down_blocks.0.downsamplers.0.conv.weight"));
  EXPECT_TRUE(own.count("decoder.up_blocks.0.upsamplers.0.conv.weight"));
  EXPECT_TRUE(own.count("quant_conv.weight"));
  EXPECT_TRUE(own.count("post_quant_conv.weight"));
  EXPECT_DOUBLE_EQ(vae_->scaling_factor(), static_cast<double>(0.18215f));  // proto default = SD v1
}

TEST_F(VaeParityTest, EncodeMatchesDiffusers) {
  torch::NoGradGuard no_grad;
  auto posterior = vae_->encode(io_["images"]);
  expect_close(posterior.mean(), io_["mean"], kTol, "mean");
  expect_close(posterior.logvar(), io_["logvar"], kTol, "logvar");
  expect_close(posterior.sample_with_noise(io_["noise"]), io_["sample"], kTol, "sample with given noise");
  auto gen = at::make_generator<at::CPUGeneratorImpl>(77);
  expect_close(posterior.sample(gen), io_["sample_gen"], kTol, "sample from a seeded generator");
  expect_close(posterior.mode(), io_["mean"], kTol, "mode");
}

TEST_F(VaeParityTest, DecodeMatchesDiffusers) {
  torch::NoGradGuard no_grad;
  expect_close(vae_->decode(io_["latents"]), io_["decoded"], kTol, "decoded");
}

TEST_F(VaeParityTest, LogvarIsClamped) {
  auto moments = torch::zeros({1, 8, 2, 2});
  moments.slice(1, 4).fill_(100.0);
  DiagonalGaussian d(moments);
  EXPECT_FLOAT_EQ(d.logvar().max().item<float>(), 20.0f);
  moments.slice(1, 4).fill_(-100.0);
  EXPECT_FLOAT_EQ(DiagonalGaussian(moments).logvar().min().item<float>(), -30.0f);
}

TEST_F(VaeParityTest, GradientCheckpointingGivesIdenticalGradients) {
  AutoencoderKL ckpt(config_);
  load_state_dict_strict(*ckpt, weights_);
  ckpt->set_gradient_checkpointing(true);
  vae_->train();
  ckpt->train();
  auto run = [this](AutoencoderKL& m) {
    m->zero_grad();
    auto loss = m->decode(m->encode(io_["images"]).sample_with_noise(io_["noise"])).pow(2).mean();
    loss.backward();
    return loss.item<double>();
  };
  EXPECT_EQ(run(vae_), run(ckpt));
  auto a = vae_->named_parameters();
  auto b = ckpt->named_parameters();
  for (const auto& p : a) {
    ASSERT_TRUE(b[p.key()].grad().defined()) << p.key();
    EXPECT_TRUE(torch::allclose(b[p.key()].grad(), p.value().grad(), 1e-6, 1e-7)) << p.key();
  }
}

}  // namespace
}  // namespace sdtrain

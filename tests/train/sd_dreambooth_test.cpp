// The stable_diffusion model's DreamBooth parts: the prior-preservation loss (diffusers'
// train_dreambooth.py formula) and full text-encoder fine-tuning (train_text_encoder), on a tiny
// model and fixed batches.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "framework/train/autocast.h"
#include "sdtrain/errors.h"
#include "tests/train/tiny_sd_model.h"

namespace sdtrain {
namespace {

using testing::make_tiny_model;

/// A fixed batch of `size` 32 px images with captions and seeds from `seed`.
Batch fixed_batch(int64_t size, uint64_t seed) {
  Batch batch;
  torch::manual_seed(static_cast<int64_t>(seed));
  batch.pixels = torch::rand({size, 3, 32, 32}) * 2 - 1;
  for (int64_t i = 0; i < size; ++i) {
    batch.captions.push_back(i % 2 == 0 ? "a photo of sks dog" : "a photo of a dog");
    batch.keys.push_back("img" + std::to_string(i));
    batch.seeds.push_back(seed * 100 + static_cast<uint64_t>(i));
  }
  return batch;
}

/// Rows [begin, begin + count) of `batch`.
Batch rows(const Batch& batch, int64_t begin, int64_t count) {
  Batch part;
  part.pixels = batch.pixels.narrow(0, begin, count);
  part.captions.assign(batch.captions.begin() + begin, batch.captions.begin() + begin + count);
  part.keys.assign(batch.keys.begin() + begin, batch.keys.begin() + begin + count);
  part.seeds.assign(batch.seeds.begin() + begin, batch.seeds.begin() + begin + count);
  return part;
}

// train_dreambooth.py: model_pred, model_pred_prior = torch.chunk(model_pred, 2, dim=0) (target
// alike), loss = F.mse_loss(model_pred, target, "mean") + prior_loss_weight *
// F.mse_loss(model_pred_prior, target_prior, "mean").
TEST(PriorPreservation, ReduceSampleLossesIsDiffusersFormula) {
  torch::manual_seed(0);
  const torch::Tensor prediction = torch::randn({6, 4, 8, 8});
  const torch::Tensor target = torch::randn({6, 4, 8, 8});
  const std::vector<torch::Tensor> predictions = torch::chunk(prediction, 2, 0);
  const std::vector<torch::Tensor> targets = torch::chunk(target, 2, 0);
  const double weight = 0.7;
  const torch::Tensor diffusers = torch::mse_loss(predictions[0], targets[0]) + weight * torch::mse_loss(predictions[1], targets[1]);
  Batch batch;
  batch.prior_samples = 3;
  batch.prior_loss_weight = weight;
  const torch::Tensor per_sample = (prediction - target).pow(2).reshape({6, -1}).mean(1);
  EXPECT_NEAR(reduce_sample_losses(per_sample, batch).item<double>(), diffusers.item<double>(), 1e-6);
  batch.prior_samples = 0;
  EXPECT_NEAR(reduce_sample_losses(per_sample, batch).item<double>(), torch::mse_loss(prediction, target).item<double>(),
              1e-6);
  batch.prior_samples = 6;
  EXPECT_THROW(reduce_sample_losses(per_sample, batch), c10::Error);
}

// The model's loss of a paired batch: each half's loss as it would be alone, combined as above.
TEST(PriorPreservation, StableDiffusionLossOfAPairedBatch) {
  auto model = make_tiny_model("min_snr_gamma: 5");
  ASSERT_TRUE(model->supports_prior_preservation());
  Batch paired = fixed_batch(4, 7);
  paired.prior_samples = 2;
  paired.prior_loss_weight = 0.25;
  torch::NoGradGuard no_grad;
  const double loss = model->training_loss(paired).item<double>();
  const double instance = model->training_loss(rows(paired, 0, 2)).item<double>();
  const double prior = model->training_loss(rows(paired, 2, 2)).item<double>();
  EXPECT_NEAR(loss, instance + 0.25 * prior, 1e-5 * loss);
  EXPECT_GT(std::abs(loss - (instance + prior) / 2), 1e-3 * loss) << "not the plain mean";
}

TEST(TrainTextEncoder, BothNetworksTrainInTheirOwnGroups) {
  auto model = make_tiny_model("train_text_encoder: true text_encoder_lr_factor: 0.25");
  const auto groups = model->parameter_groups();
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].name, "unet");
  EXPECT_EQ(groups[0].prefix, "unet.");
  EXPECT_EQ(groups[1].name, "text_encoder");
  EXPECT_EQ(groups[1].prefix, "text_encoder.");
  EXPECT_EQ(groups[1].lr_factor, 0.25);
  std::set<std::string> prefixes;
  for (const auto& item : model->trainable_module().named_parameters()) {
    prefixes.insert(item.key().substr(0, item.key().find('.')));
    EXPECT_TRUE(item.value().requires_grad()) << item.key();
  }
  EXPECT_EQ(prefixes, (std::set<std::string>{"text_encoder", "unet"}));

  // Gradients reach the text encoder's first layer.
  const torch::Tensor loss = model->training_loss(fixed_batch(2, 3));
  loss.backward();
  const torch::Tensor embedding_grad =
      model->networks().text_encoder->named_parameters()["text_model.embeddings.token_embedding.weight"].grad();
  ASSERT_TRUE(embedding_grad.defined());
  EXPECT_GT(embedding_grad.abs().sum().item<double>(), 0.0);
}

TEST(TrainTextEncoder, StaysFloat32WhereTheFrozenAutoencoderIsLowered) {
  auto model = make_tiny_model("train_text_encoder: true", 3, ".", torch::kBFloat16);
  for (const auto& parameter : model->networks().text_encoder->parameters()) {
    EXPECT_EQ(parameter.scalar_type(), torch::kFloat32);
  }
  for (const auto& parameter : model->networks().vae->parameters()) EXPECT_EQ(parameter.scalar_type(), torch::kBFloat16);
  AutocastScope autocast(BF16, torch::Device(torch::kCPU));
  const torch::Tensor loss = model->training_loss(fixed_batch(2, 3));
  EXPECT_TRUE(std::isfinite(loss.item<double>()));
}

std::string config_error(const std::string& extra) {
  try {
    make_tiny_model(extra);
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "";
}

TEST(TrainTextEncoder, RefusesWhatItRulesOut) {
  EXPECT_EQ(config_error("train_text_encoder: true cache { text_embeddings: true }"),
            "cache.text_embeddings: cannot be on with train_text_encoder: the text encoder's output changes as it "
            "trains");
  EXPECT_EQ(config_error("train_text_encoder: true adapter { lora {} }"),
            "train_text_encoder: cannot be combined with adapter (the base stays frozen with adapters; set "
            "adapter.lora.text_encoder to train adapters on the text encoder)");
  EXPECT_EQ(config_error("train_text_encoder: true text_encoder_lr_factor: -1"),
            "text_encoder_lr_factor: must be >= 0");
}

}  // namespace
}  // namespace sdtrain

// Gradient checkpointing under mixed precision: the recompute in backward must cast the weights as
// they are now, not reuse low-precision copies cached before an optimizer step changed them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>

#include "framework/train/autocast.h"
#include "plugins/models/stable_diffusion/modules/unet_2d_condition_model.h"
#include "tests/modules/module_test_util.h"

namespace sdtrain {
namespace {

// Measured with the fix: 1.8e-4 (loss, relative) and 3.5e-5 (weights, relative L2); with the
// stale copies: 0.14 and 1.3e-3.
constexpr double kLossTolerance = 2e-3;
constexpr double kWeightTolerance = 2.5e-4;

struct Trajectory {
  std::vector<double> losses;
  std::vector<torch::Tensor> weights;  ///< after the last step, in named_parameters() order
};

/// `steps` plain SGD steps of the tiny UNet with the forward under bf16 autocast (the trainer's
/// AutocastScope), backward outside it, as the trainer runs a step.
Trajectory train(bool checkpointing, int steps) {
  UNet2DConditionModel unet = testing::tiny_training_unet(
      [&](UNet2DConditionConfig& config) { config.set_gradient_checkpointing(checkpointing); });
  const UNet2DConditionConfig& config = unet->config();
  torch::manual_seed(4);
  const int64_t channels = config.in_channels();
  const torch::Tensor sample = torch::randn({2, channels, 8, 8});
  const torch::Tensor context = torch::randn({2, 4, config.cross_attention_dim()});
  const torch::Tensor target = torch::randn({2, config.out_channels(), 8, 8});
  const torch::Tensor timesteps = torch::tensor({7, 500});

  Trajectory result;
  for (int step = 0; step < steps; ++step) {
    unet->zero_grad();
    torch::Tensor loss;
    {
      AutocastScope autocast(BF16, torch::kCPU);
      loss = torch::mse_loss(unet->forward(sample, timesteps, context).to(torch::kFloat32), target);
    }
    loss.backward();
    result.losses.push_back(loss.item<double>());
    torch::NoGradGuard no_grad;
    // A step large enough that a stale bf16 copy of a weight changes the next loss visibly.
    for (auto& parameter : unet->parameters()) parameter.sub_(parameter.grad(), 0.05);
  }
  for (const auto& parameter : unet->parameters()) result.weights.push_back(parameter.detach().clone());
  return result;
}

// The recompute is the same bf16 math; what differs is the order in which the gradients of the
// skip connections are summed (float rounding), which flips the bf16 rounding of a few weights
// after the first step. Stale weights make the second step's loss differ ~100x more.
TEST(CheckpointUnderAutocast, Bf16StepsWithCheckpointingEqualStepsWithout) {
  const Trajectory plain = train(false, 3);
  const Trajectory checkpointed = train(true, 3);
  ASSERT_EQ(plain.losses.size(), checkpointed.losses.size());
  EXPECT_EQ(plain.losses[0], checkpointed.losses[0]);  // nothing to go stale before the first step
  for (std::size_t step = 1; step < plain.losses.size(); ++step) {
    std::printf("step %zu: loss %.9g vs %.9g\n", step, plain.losses[step], checkpointed.losses[step]);
    EXPECT_NEAR(plain.losses[step], checkpointed.losses[step], kLossTolerance * plain.losses[step]) << "step " << step;
  }
  ASSERT_EQ(plain.weights.size(), checkpointed.weights.size());
  std::vector<torch::Tensor> a, b;
  for (std::size_t i = 0; i < plain.weights.size(); ++i) {
    a.push_back(plain.weights[i].flatten());
    b.push_back(checkpointed.weights[i].flatten());
  }
  const torch::Tensor all_plain = torch::cat(a), all_checkpointed = torch::cat(b);
  const double relative = ((all_checkpointed - all_plain).norm() / all_plain.norm()).item<double>();
  std::printf("weights: relative L2 difference %.3g\n", relative);
  EXPECT_LE(relative, kWeightTolerance);
}

}  // namespace
}  // namespace sdtrain

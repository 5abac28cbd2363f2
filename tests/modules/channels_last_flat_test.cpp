// unet.channels_last with the flat parameter buffers: the convolution weights and their gradients
// stay channels-last views inside the buffers (no copy back to the standard layout, no strided
// gradient accumulation), and training steps give the standard layout's results.
#include <gtest/gtest.h>

#include <cstdio>

#include "framework/train/adamw.h"
#include "framework/train/flat_parameters.h"
#include "plugins/models/stable_diffusion/modules/unet_2d_condition_model.h"
#include "tests/modules/module_test_util.h"

namespace sdtrain {
namespace {

bool inside(const torch::Tensor& view, const torch::Tensor& buffer) {
  const auto* begin = static_cast<const char*>(buffer.data_ptr());
  const auto* at = static_cast<const char*>(view.data_ptr());
  return at >= begin && at + view.numel() * view.element_size() <= begin + buffer.numel() * buffer.element_size();
}

UNet2DConditionModel make_unet(bool channels_last) {
  return testing::tiny_training_unet([&](UNet2DConditionConfig& config) { config.set_channels_last(channels_last); });
}

struct Trajectory {
  std::vector<double> losses;
  torch::Tensor weights;  ///< every parameter, row-major, concatenated
};

/// Two AdamW steps of the tiny UNet over the flat buffers, as the trainer runs them.
Trajectory train(UNet2DConditionModel& unet, FlatParameters& flat) {
  const UNet2DConditionConfig& config = unet->config();
  torch::manual_seed(4);
  const torch::Tensor sample = torch::randn({2, config.in_channels(), 8, 8});
  const torch::Tensor context = torch::randn({2, 4, config.cross_attention_dim()});
  const torch::Tensor target = torch::randn({2, config.out_channels(), 8, 8});
  const torch::Tensor timesteps = torch::tensor({7, 500});
  FlatAdamW adamw(flat.values(), OptimizerConfig());
  Trajectory run;
  for (int step = 0; step < 2; ++step) {
    flat.zero_grad();
    const torch::Tensor loss = torch::mse_loss(unet->forward(sample, timesteps, context), target);
    loss.backward();
    run.losses.push_back(loss.item<double>());
    adamw.step(flat.values(), flat.grads(), 1e-3);
  }
  std::vector<torch::Tensor> parts;
  for (const auto& parameter : unet->parameters()) parts.push_back(parameter.detach().contiguous().flatten());
  run.weights = torch::cat(parts);
  return run;
}

TEST(ChannelsLastFlat, ConvWeightsAndGradientsStayChannelsLastViewsOfTheBuffers) {
  UNet2DConditionModel unet = make_unet(true);
  FlatParameters flat(*unet);
  EXPECT_EQ(flat.layout(), "channels-last");
  int spatial_convs = 0;
  for (const torch::Tensor& parameter : flat.tensors()) {
    EXPECT_TRUE(inside(parameter, flat.values()));
    if (parameter.dim() != 4 || parameter.size(2) * parameter.size(3) == 1) continue;
    ++spatial_convs;
    EXPECT_TRUE(parameter.is_contiguous(c10::MemoryFormat::ChannelsLast)) << parameter.sizes();
    EXPECT_FALSE(parameter.is_contiguous()) << parameter.sizes();
  }
  EXPECT_GT(spatial_convs, 0);
  train(unet, flat);
  for (const torch::Tensor& parameter : flat.tensors()) {
    const torch::Tensor grad = parameter.grad();
    EXPECT_TRUE(inside(grad, flat.grads())) << "backward replaced a gradient view";
    if (parameter.dim() == 4) {
      EXPECT_EQ(grad.strides(), parameter.strides()) << parameter.sizes();
    }
  }

  UNet2DConditionModel standard = make_unet(false);
  EXPECT_EQ(FlatParameters(*standard).layout(), "standard");
}

TEST(ChannelsLastFlat, StepsEqualTheStandardLayoutsWithinFloatRounding) {
  UNet2DConditionModel last = make_unet(true);
  UNet2DConditionModel standard = make_unet(false);
  FlatParameters last_flat(*last);
  FlatParameters standard_flat(*standard);
  const Trajectory a = train(last, last_flat);
  const Trajectory b = train(standard, standard_flat);
  for (std::size_t step = 0; step < a.losses.size(); ++step) {
    std::printf("step %zu: loss %.9g (channels-last) vs %.9g\n", step, a.losses[step], b.losses[step]);
    EXPECT_NEAR(a.losses[step], b.losses[step], 1e-5 * b.losses[step]);
  }
  const double relative = ((a.weights - b.weights).norm() / b.weights.norm()).item<double>();
  std::printf("weights: relative L2 difference %.3g\n", relative);
  EXPECT_LE(relative, 1e-5);
}

}  // namespace
}  // namespace sdtrain

// The FULL SD v1 UNet (860M parameters) against diffusers at 8x8 latents. Both sides fill the
// parameters deterministically from seeded randn (no 3.4 GB weight file). Label: slow.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include "plugins/models/stable_diffusion/modules/unet_2d_condition_model.h"
#include "tests/modules/module_test_util.h"

namespace sdtrain {
namespace {

// Mirrors fill_deterministic() in make_module_fixtures.py.
void fill_deterministic(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  std::map<std::string, torch::Tensor> params;
  for (const auto& p : module.named_parameters()) params[p.key()] = p.value();
  int64_t i = 0;
  for (auto& [name, p] : params) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(1000 + i++);
    auto r = torch::randn(p.sizes(), gen, torch::kFloat32);
    if (p.dim() >= 2) {
      p.copy_(r / std::sqrt(static_cast<double>(p[0].numel())));
    } else if (name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0) {
      p.copy_(1 + 0.1 * r);
    } else {
      p.copy_(0.1 * r);
    }
  }
}

TEST(FullUNetParityTest, StableDiffusionV1ForwardMatchesDiffusers) {
  auto io = testing::read_tensor_file(testing::fixture_path("sd_modules_full", "full_unet_io.pt"));
  UNet2DConditionModel unet;  // empty config = SD v1
  int64_t count = 0;
  for (const auto& p : unet->parameters()) count += p.numel();
  EXPECT_EQ(count, io["num_parameters"].item<int64_t>());
  fill_deterministic(*unet);
  unet->eval();
  torch::NoGradGuard no_grad;
  auto out = unet->forward(io["sample"], io["timestep"], io["encoder_hidden_states"]);
  testing::expect_close(out, io["output"], 1e-4, "full SD v1 UNet output");
}

}  // namespace
}  // namespace sdtrain

// The EMA's start from a weights file: its EMA UNet and, as the recipe's non-strict load restores
// LitEma's num_updates buffer, its update count, so the decay warm-up does not start over.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "plugins/models/stable_diffusion/modules/state_dict_loader.h"
#include "plugins/models/stable_diffusion/weights/sd_weights_io.h"
#include "tests/common/test_env.h"
#include "tests/train/tiny_sd_model.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

using testing::make_tiny_model;

/// An original-layout single file of the tiny model with an EMA UNet (weights + 1) and LitEma's
/// counters.
std::string write_file_with_ema(const fs::path& dir, int32_t num_updates) {
  const auto model = make_tiny_model("");
  SdWeights weights;
  weights.unet = module_state_dict(*model->networks().unet);
  weights.vae = module_state_dict(*model->networks().vae);
  weights.text_encoder = module_state_dict(*model->networks().text_encoder);
  for (const auto& [name, tensor] : weights.unet) weights.unet_ema[name] = tensor + 1;
  weights.extras["model_ema.decay"] = torch::tensor(0.9999f);
  weights.extras["model_ema.num_updates"] = torch::tensor(num_updates, torch::kInt32);
  const std::string path = (dir / "with_ema.ckpt").string();
  save_sd_weights(weights, path, SdFormat::kCkpt);
  return path;
}

TEST(EmaStart, ContinuesTheFilesUpdateCount) {
  const std::string path = write_file_with_ema(test::scratch_dir(), 470000);
  const auto model = make_tiny_model("weights: \"" + path + "\"");
  EXPECT_EQ(model->ema_start_updates(), 470000);
  const auto start = model->ema_start_weights();
  ASSERT_FALSE(start.empty());
  const std::string name = "conv_in.weight";
  EXPECT_TRUE(torch::allclose(start.at(name), model->networks().unet->named_parameters()[name] + 1));

  // Without the file's EMA, nothing to continue.
  EXPECT_EQ(make_tiny_model("weights: \"" + path + "\" ema_from_weights: false")->ema_start_updates(), 0);
  // Adapters have an EMA of their own, which starts fresh.
  EXPECT_EQ(make_tiny_model("weights: \"" + path + "\" adapter { lora {} }")->ema_start_updates(), 0);
}

}  // namespace
}  // namespace sdtrain

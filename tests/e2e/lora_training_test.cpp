// `sdtrain` training LoRA / LoCon adapters of a tiny stable_diffusion model for real: only the
// adapters are trained and checkpointed (kohya's names), two ranks of batch B equal one rank of
// batch 2B, a stopped run resumes exactly, and a checkpoint refuses to resume on another base.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "framework/io/safetensors_reader.h"
#include "framework/util/file_util.h"
#include "tests/common/test_env.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;



/// Trains a tiny SD model's LoRA + LoCon adapters (UNet and text encoder) up to `steps` steps,
/// checkpointing every 2, resuming from the last checkpoint in `dir`/out when there is one.
/// Returns the exit code; `output` receives the console. Norm groups hold 4 channels or more: with
/// one channel per group GroupNorm removes time_emb_proj's per-channel shift, and its adapters'
/// gradient would be rounding noise.
/// Config additions: top-level fields, UNet options and LoRA options.
struct Variant {
  std::string top;
  std::string unet;
  std::string lora;
};

int train(const fs::path& dir, int ranks, int batch, int steps, int seed, std::string* output,
          const Variant& variant = {}) {
  const std::string config = test::write_text(
      dir / "lora.pbtxt",
      "run { output_dir: \"out\" seed: " + std::to_string(seed) + " max_steps: " + std::to_string(steps) +
          " val_every_n_epochs: 0 checkpoint_every_n_steps: 2 resume: \"auto\" }\n"
          "model { type: \"stable_diffusion\" options { [type.googleapis.com/sdtrain.StableDiffusionOptions] {\n"
          "  unet { sample_size: 4 in_channels: 4 out_channels: 4 block_out_channels: [32, 64] layers_per_block: 1\n"
          "         cross_attention_dim: 32 attention_head_dim: 8 norm_num_groups: 8\n"
          "         down_block_types: [\"CrossAttnDownBlock2D\", \"DownBlock2D\"]\n"
          "         up_block_types: [\"UpBlock2D\", \"CrossAttnUpBlock2D\"] " + variant.unet + " }\n"
          "  vae { block_out_channels: [32, 32, 32, 32] layers_per_block: 1 sample_size: 32 }\n"
          "  text_encoder { hidden_size: 32 intermediate_size: 37 num_hidden_layers: 2 num_attention_heads: 4 }\n"
          "  adapter { lora { rank: 4 alpha: 2 conv_rank: 2 text_encoder: true text_encoder_lr_factor: 0.5 " + variant.lora + " } } } } }\n"
          "data { train { type: \"image_folder\" options { [type.googleapis.com/sdtrain.ImageFolderOptions] {"
          " root: \"" + (dir.parent_path() / "data").string() + "\" } } } batch_size: " + std::to_string(batch) +
          " num_workers: 1 transforms { resolution: 32 random_flip: false } }\n"
          // AdamW's eps well above the gradients makes its first steps proportional to the gradient
          // instead of its sign, so two ranks' and one rank's summation rounding stays rounding.
          "optimizer { base_learning_rate: 0.01 eps: 1.0 }\n"
          "ema { enabled: true decay: 0.9 }\n"
          "lr_schedule { type: \"constant\" }\n" + variant.top);
  return test::run_command(test::mpirun(ranks) + " " + (test::binary_dir() / "bin" / "sdtrain").string() +
                               " --config " + config,
                           output);
}

fs::path checkpoint(const fs::path& dir, int step) { return test::checkpoint_dir(dir / "out", step); }

using test::expect_same_tensors;

class LoraTraining : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::scratch_dir();
    test::write_captioned_image_folder(dir_ / "data", 8, {"a red square", "a blue circle"});
  }
  fs::path dir_;
};

TEST_F(LoraTraining, OnlyAdaptersTrainAndTwoRanksEqualOneRankWithTheGlobalBatch) {
  std::string two_output, one_output;
  ASSERT_EQ(train(dir_ / "two", 2, 2, 4, 5, &two_output, {"final_export { folder: \"my_style\" use_ema: false }\n", "", ""}), 0)
      << two_output;
  ASSERT_EQ(train(dir_ / "one", 1, 4, 4, 5, &one_output), 0) << one_output;
  const fs::path two = checkpoint(dir_ / "two", 4);
  expect_same_tensors(two / "model.safetensors", checkpoint(dir_ / "one", 4) / "model.safetensors", 1e-4);
  expect_same_tensors(two / "ema.safetensors", checkpoint(dir_ / "one", 4) / "ema.safetensors", 1e-4);

  SafetensorsReader weights((two / "model.safetensors").string());
  int64_t unet = 0, text = 0, conv = 0;
  for (const auto& name : weights.names()) {
    const bool unet_adapter = name.rfind("lora_unet_", 0) == 0;
    EXPECT_TRUE(unet_adapter || name.rfind("lora_te_", 0) == 0) << "not an adapter tensor: " << name;
    EXPECT_TRUE(name.find(".lora_down.weight") != std::string::npos || name.find(".lora_up.weight") != std::string::npos)
        << name;
    (unet_adapter ? unet : text) += 1;
    if (name == "lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight") {
      ++conv;
      EXPECT_EQ(weights.tensor(name).sizes(), (std::vector<int64_t>{2, 32, 3, 3}));
    }
  }
  EXPECT_GT(unet, 0);
  EXPECT_EQ(text, 2 * 2 * 6) << "2 layers x (q, k, v, out_proj, fc1, fc2) x (down, up)";
  EXPECT_EQ(conv, 1) << "LoCon wraps the ResNet convolutions";
  // The adapters trained: an up weight (zero at the start) moved.
  EXPECT_GT(weights.tensor("lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight").abs().max().item<double>(),
            0.0);

  // The final export is the adapter itself, in kohya's layout (named after the folder, with its
  // alphas and ss_* metadata) and diffusers' (for load_lora_weights(folder)).
  const fs::path exported = dir_ / "two" / "out" / "my_style";
  ASSERT_TRUE(fs::exists(exported / "my_style.safetensors"));
  ASSERT_TRUE(fs::exists(exported / "pytorch_lora_weights.safetensors"));
  EXPECT_FALSE(fs::exists(exported / "model_index.json")) << "a full model was exported";
  SafetensorsReader kohya((exported / "my_style.safetensors").string());
  EXPECT_EQ(kohya.metadata().at("ss_network_dim"), "4");
  EXPECT_EQ(kohya.metadata().at("ss_network_module"), "networks.lora");
  EXPECT_EQ(kohya.tensor("lora_unet_down_blocks_0_resnets_0_conv1.alpha").item<float>(), 1.0f) << "conv_alpha";
  EXPECT_EQ(kohya.tensor("lora_te_text_model_encoder_layers_0_mlp_fc1.alpha").item<float>(), 2.0f);
  for (const auto& name : weights.names()) {
    EXPECT_TRUE(torch::equal(kohya.tensor(name), weights.tensor(name))) << name << " differs from the last checkpoint";
  }

  // sdconvert reads the checkpoint as a whole model, the adapters merged into the base.
  std::string output;
  const fs::path merged = dir_ / "merged";
  ASSERT_EQ(test::run_command((test::binary_dir() / "bin" / "sdconvert").string() + " --input " + two.string() +
                                  " --output " + merged.string() + " --to diffusers",
                              &output),
            0)
      << output;
  EXPECT_TRUE(fs::exists(merged / "unet" / "diffusion_pytorch_model.safetensors")) << output;

  const std::string log = read_file((dir_ / "two" / "out" / "logs" / "rank-00000.log").string());
  EXPECT_NE(log.find("LoRA adapters on "), std::string::npos) << log;
  EXPECT_NE(log.find("lora_te_text_model_encoder_layers_1_mlp_fc2 (Linear, rank 4, scale 0.5)"), std::string::npos);
  EXPECT_NE(log.find("parameter group lora_te: "), std::string::npos) << log;
  EXPECT_NE(log.find("learning rate x0.5"), std::string::npos) << log;
}

TEST_F(LoraTraining, AStoppedRunResumesExactlyButNotOnAnotherBase) {
  std::string output;
  ASSERT_EQ(train(dir_ / "straight", 1, 2, 4, 5, &output), 0) << output;
  ASSERT_EQ(train(dir_ / "stopped", 1, 2, 2, 5, &output), 0) << output;
  ASSERT_EQ(train(dir_ / "stopped", 1, 2, 4, 5, &output), 0) << output;
  EXPECT_NE(output.find("resum"), std::string::npos) << output;
  expect_same_tensors(checkpoint(dir_ / "stopped", 4) / "model.safetensors",
                      checkpoint(dir_ / "straight", 4) / "model.safetensors", 0.0);
  expect_same_tensors(checkpoint(dir_ / "stopped", 4) / "ema.safetensors",
                      checkpoint(dir_ / "straight", 4) / "ema.safetensors", 0.0);

  // Another seed initialises another random base: the adapters of the checkpoint do not fit it.
  fs::create_directories(dir_ / "other_base");
  fs::copy(dir_ / "stopped" / "out", dir_ / "other_base" / "out", fs::copy_options::recursive);
  ASSERT_NE(train(dir_ / "other_base", 1, 2, 6, 6, &output), 0) << output;
  EXPECT_NE(output.find("the checkpoint's model base_model is "), std::string::npos) << output;
  EXPECT_NE(output.find("it can resume only on the model it was trained on"), std::string::npos) << output;
}

// bf16: the frozen UNet's Linear and Conv2d weights are held in bf16 under autocast (its norms
// stay float32, as the CPU's norm kernels need), the adapters in float32; dropout is on and the
// gradient checkpointing recompute draws its masks again. The run trains and resumes exactly.
TEST_F(LoraTraining, TrainsInBf16WithTheFrozenBaseInBf16) {
  const Variant extra{"precision: BF16\n", "gradient_checkpointing: true",
                      "dropout: 0.1 rank_dropout: 0.1 module_dropout: 0.1"};
  std::string output;
  Variant merged = extra;
  merged.top += "final_export { folder: \"merged\" }\n";
  merged.lora += " export_merged: true";
  ASSERT_EQ(train(dir_ / "straight", 1, 2, 4, 5, &output, merged), 0) << output;
  // export_merged: a whole diffusers pipeline with the adapters baked in, no adapter file.
  EXPECT_TRUE(fs::exists(dir_ / "straight" / "out" / "merged" / "model_index.json"));
  EXPECT_TRUE(fs::exists(dir_ / "straight" / "out" / "merged" / "unet" / "diffusion_pytorch_model.safetensors"));
  EXPECT_FALSE(fs::exists(dir_ / "straight" / "out" / "merged" / "pytorch_lora_weights.safetensors"));
  const std::string log = read_file((dir_ / "straight" / "out" / "logs" / "rank-00000.log").string());
  EXPECT_NE(log.find("UNet Linear and Conv2d layers held in BFloat16 (frozen_in_compute_dtype)"), std::string::npos)
      << log;
  ASSERT_EQ(train(dir_ / "stopped", 1, 2, 2, 5, &output, extra), 0) << output;
  ASSERT_EQ(train(dir_ / "stopped", 1, 2, 4, 5, &output, extra), 0) << output;
  expect_same_tensors(checkpoint(dir_ / "stopped", 4) / "model.safetensors",
                      checkpoint(dir_ / "straight", 4) / "model.safetensors", 0.0);
}

}  // namespace
}  // namespace sdtrain

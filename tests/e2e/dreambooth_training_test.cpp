// `sdtrain` fine-tuning DreamBooth-style for real: a folder of instance images with one caption,
// class images with prior preservation, the UNet and the text encoder trained. Two ranks of batch
// B equal one rank of batch 2B, a stopped run resumes exactly, and the final export holds the
// trained text encoder.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "framework/io/safetensors_reader.h"
#include "framework/util/file_util.h"
#include "tests/common/test_env.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

/// Trains up to `steps` steps, checkpointing every 2, resuming from the last checkpoint in
/// `dir`/out when there is one. `extra` adds top-level config fields. Returns the exit code.
int train(const fs::path& dir, const fs::path& data, int ranks, int batch, int steps, std::string* output,
          const std::string& extra = "") {
  const std::string folder = "options { [type.googleapis.com/sdtrain.ImageFolderOptions] { root: \"";
  const std::string config = test::write_text(
      dir / "dreambooth.pbtxt",
      "run { output_dir: \"out\" seed: 9 max_steps: " + std::to_string(steps) +
          " val_every_n_epochs: 0 checkpoint_every_n_steps: 2 resume: \"auto\" }\n"
          "model { type: \"stable_diffusion\" options { [type.googleapis.com/sdtrain.StableDiffusionOptions] {\n"
          "  unet { sample_size: 4 in_channels: 4 out_channels: 4 block_out_channels: [32, 64] layers_per_block: 1\n"
          "         cross_attention_dim: 32 attention_head_dim: 8 norm_num_groups: 8\n"
          "         down_block_types: [\"CrossAttnDownBlock2D\", \"DownBlock2D\"]\n"
          "         up_block_types: [\"UpBlock2D\", \"CrossAttnUpBlock2D\"] }\n"
          "  vae { block_out_channels: [32, 32, 32, 32] layers_per_block: 1 sample_size: 32 }\n"
          "  text_encoder { hidden_size: 32 intermediate_size: 37 num_hidden_layers: 2 num_attention_heads: 4 }\n"
          "  train_text_encoder: true text_encoder_lr_factor: 0.5 } } }\n"
          "data {\n"
          "  train { type: \"image_folder\" " + folder + (data / "instance").string() +
          "\" caption: \"a photo of sks dog\" } } }\n"
          "  prior_preservation { loss_weight: 0.5 dataset { type: \"image_folder\" " + folder +
          (data / "class").string() + "\" caption: \"a photo of a dog\" } } } }\n"
          "  batch_size: " + std::to_string(batch) + " num_workers: 1 transforms { resolution: 32 random_flip: false }\n"
          "}\n"
          // AdamW's eps well above the gradients makes its first steps proportional to the gradient
          // instead of its sign, so two ranks' and one rank's summation rounding stays rounding.
          "optimizer { base_learning_rate: 0.01 eps: 1.0 }\n"
          "ema { enabled: true decay: 0.9 }\n"
          "lr_schedule { type: \"constant\" }\n" + extra);
  return test::run_command(test::mpirun(ranks) + " " + (test::binary_dir() / "bin" / "sdtrain").string() +
                               " --config " + config,
                           output);
}

fs::path checkpoint(const fs::path& dir, int step) { return test::checkpoint_dir(dir / "out", step); }

TEST(DreamBoothTraining, PriorPreservationWithTheTextEncoderTwoRanksEqualOneAndResume) {
  const fs::path dir = test::scratch_dir();
  // 3 instance images, 5 class images (the layout sdsample --no-grid writes): 5 pairs an epoch.
  test::write_captioned_image_folder(dir / "data" / "instance", 3, {"ignored"});
  test::write_captioned_image_folder(dir / "data" / "class" / "samples", 5, {"ignored"});
  std::string two_output, one_output;
  ASSERT_EQ(train(dir / "two", dir / "data", 2, 1, 4, &two_output), 0) << two_output;
  // One rank with the global batch, stopped after step 2 and resumed to step 4, then exported.
  ASSERT_EQ(train(dir / "one", dir / "data", 1, 2, 2, &one_output), 0) << one_output;
  ASSERT_EQ(train(dir / "one", dir / "data", 1, 2, 4, &one_output,
                  "final_export { folder: \"sks_dog\" use_ema: false }\n"),
            0)
      << one_output;
  EXPECT_NE(one_output.find("resumed from"), std::string::npos) << one_output;

  const fs::path two = checkpoint(dir / "two", 4);
  const fs::path one = checkpoint(dir / "one", 4);
  test::expect_same_tensors(two / "model.safetensors", one / "model.safetensors", 1e-4);
  test::expect_same_tensors(two / "ema.safetensors", one / "ema.safetensors", 1e-4);

  SafetensorsReader weights((one / "model.safetensors").string());
  int64_t unet = 0, text = 0;
  for (const auto& name : weights.names()) {
    if (name.rfind("unet.", 0) == 0) ++unet;
    if (name.rfind("text_encoder.", 0) == 0) ++text;
  }
  EXPECT_GT(unet, 0);
  EXPECT_GT(text, 0);
  EXPECT_EQ(unet + text, static_cast<int64_t>(weights.names().size()));

  const std::string log = read_file((dir / "two" / "out" / "logs" / "rank-00000.log").string());
  EXPECT_NE(log.find("prior preservation: 5 class images, 5 (instance, class) pairs per epoch, each micro-batch 1 "
                     "instance + 1 class samples, prior loss weight 0.5"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("parameter group text_encoder: "), std::string::npos) << log;

  // The export holds the trained text encoder, as the last checkpoint has it.
  const fs::path exported = dir / "one" / "out" / "sks_dog";
  SafetensorsReader text_encoder((exported / "text_encoder" / "model.safetensors").string());
  const std::string name = "text_model.encoder.layers.0.self_attn.q_proj.weight";
  EXPECT_TRUE(torch::equal(text_encoder.tensor(name), weights.tensor("text_encoder." + name)));

  // sdconvert reads the checkpoint folder itself: the trained (or EMA) UNet and text encoder.
  const std::string sdconvert = (test::binary_dir() / "bin" / "sdconvert").string();
  SafetensorsReader ema((one / "ema.safetensors").string());
  for (const bool use_ema : {false, true}) {
    const fs::path converted = dir / (use_ema ? "converted_ema" : "converted");
    std::string output;
    ASSERT_EQ(test::run_command(sdconvert + " --input " + one.string() + " --output " + converted.string() +
                                    " --to diffusers" + (use_ema ? " --use-ema" : ""),
                                &output),
              0)
        << output;
    const SafetensorsReader& source = use_ema ? ema : weights;
    SafetensorsReader unet((converted / "unet" / "diffusion_pytorch_model.safetensors").string());
    SafetensorsReader text((converted / "text_encoder" / "model.safetensors").string());
    EXPECT_TRUE(torch::equal(unet.tensor("conv_in.weight"), source.tensor("unet.conv_in.weight"))) << use_ema;
    EXPECT_TRUE(torch::equal(text.tensor(name), source.tensor("text_encoder." + name))) << use_ema;
  }
  EXPECT_FALSE(torch::equal(ema.tensor("unet.conv_in.weight"), weights.tensor("unet.conv_in.weight")));
}

}  // namespace
}  // namespace sdtrain

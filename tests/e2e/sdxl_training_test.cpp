// `sdtrain` fine-tuning a tiny SDXL-shaped model for real: the UNet and both text encoders
// (train_text_encoder), the size micro-conditioning from images of several sizes (random crops
// and flips), caption dropout. Two ranks of batch B equal one rank of batch 2B, a stopped run
// resumes exactly, the final export is a StableDiffusionXLPipeline folder diffusers loads with the
// trained UNet and encoders, and sdsample samples the checkpoint.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "framework/io/safetensors_reader.h"
#include "tests/common/test_env.h"
#include "tests/common/test_images.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

/// Eight images of four sizes (wide, tall, square, small) with two captions.
void write_images(const fs::path& dir) {
  fs::create_directories(dir);
  std::ofstream csv(dir / "metadata.csv");
  csv << "file_name,text\n";
  const int sizes[][2] = {{48, 32}, {32, 56}, {40, 40}, {36, 28}};
  for (int i = 0; i < 8; ++i) {
    const std::string name = "img" + std::to_string(i) + ".png";
    testing::write_test_png((dir / name).string(), sizes[i % 4][0], sizes[i % 4][1], i);
    csv << name << "," << (i % 2 == 0 ? "a red square" : "a blue square") << "\n";
  }
}

/// Trains up to `steps` steps, checkpointing every 2, resuming from the last checkpoint in
/// `dir`/out when there is one. `extra` adds top-level config fields. Returns the exit code.
int train(const fs::path& dir, const fs::path& data, int ranks, int batch, int steps, std::string* output,
          const std::string& extra = "") {
  const std::string config = test::write_text(
      dir / "sdxl.pbtxt",
      "run { output_dir: \"out\" seed: 9 max_steps: " + std::to_string(steps) +
          " val_every_n_epochs: 0 checkpoint_every_n_steps: 2 resume: \"auto\" }\n"
          "model { type: \"stable_diffusion\" options { [type.googleapis.com/sdtrain.StableDiffusionOptions] {\n"
          "  unet { sample_size: 4 in_channels: 4 out_channels: 4 block_out_channels: [32, 64] layers_per_block: 1\n"
          "         cross_attention_dim: 80 attention_head_dim: [2, 4] norm_num_groups: 8 use_linear_projection: true\n"
          "         transformer_layers_per_block: [1, 2]\n"
          "         down_block_types: [\"DownBlock2D\", \"CrossAttnDownBlock2D\"]\n"
          "         up_block_types: [\"CrossAttnUpBlock2D\", \"UpBlock2D\"]\n"
          "         addition_embed_type: \"text_time\" addition_time_embed_dim: 8\n"
          "         projection_class_embeddings_input_dim: 64 }\n"
          "  vae { block_out_channels: [32, 32, 32, 32] layers_per_block: 1 sample_size: 32 scaling_factor: 0.13025 }\n"
          "  text_encoder { hidden_size: 32 intermediate_size: 37 num_hidden_layers: 2 num_attention_heads: 4 }\n"
          "  text_encoder_2 { hidden_size: 48 intermediate_size: 53 num_hidden_layers: 2 num_attention_heads: 4\n"
          "                   hidden_act: \"gelu\" projection_dim: 16 }\n"
          "  train_text_encoder: true text_encoder_lr_factor: 0.5 } } }\n"
          "data {\n"
          "  train { type: \"image_folder\" options { [type.googleapis.com/sdtrain.ImageFolderOptions] { root: \"" +
          data.string() + "\" } } }\n"
          "  batch_size: " + std::to_string(batch) +
          " num_workers: 1 caption_dropout: 0.25\n"
          "  transforms { resolution: 32 crop: RANDOM random_flip: true }\n"
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

TEST(SdxlTraining, TwoRanksEqualOneResumeExportAndSample) {
  const fs::path dir = test::scratch_dir();
  write_images(dir / "data");
  std::string two_output, one_output;
  ASSERT_EQ(train(dir / "two", dir / "data", 2, 1, 4, &two_output), 0) << two_output;
  ASSERT_EQ(train(dir / "one", dir / "data", 1, 2, 2, &one_output), 0) << one_output;
  ASSERT_EQ(train(dir / "one", dir / "data", 1, 2, 4, &one_output,
                  "final_export { folder: \"sdxl_diffusers\" use_ema: false }\n"),
            0)
      << one_output;
  EXPECT_NE(one_output.find("resumed from"), std::string::npos) << one_output;
  const fs::path two = test::checkpoint_dir(dir / "two" / "out", 4);
  const fs::path one = test::checkpoint_dir(dir / "one" / "out", 4);
  test::expect_same_tensors(two / "model.safetensors", one / "model.safetensors", 1e-4);
  test::expect_same_tensors(two / "ema.safetensors", one / "ema.safetensors", 1e-4);
  SafetensorsReader trained((one / "model.safetensors").string());
  EXPECT_TRUE(trained.contains("unet.add_embedding.linear_1.weight"));
  EXPECT_TRUE(trained.contains("text_encoder_2.text_projection.weight"));

  // The export is a StableDiffusionXLPipeline diffusers loads, with the trained networks.
  const fs::path exported = dir / "one" / "out" / "sdxl_diffusers";
  std::string output;
  const std::string check =
      "import sys, torch\n"
      "from diffusers import StableDiffusionXLPipeline\n"
      "from safetensors.torch import load_file\n"
      "pipe = StableDiffusionXLPipeline.from_pretrained(sys.argv[1], local_files_only=True)\n"
      "trained = load_file(sys.argv[2])\n"
      "for component in ('unet', 'text_encoder', 'text_encoder_2'):\n"
      // transformers names the encoders' tensors with "text_model." before 5.6, without it since.
      "    want = {k[len(component) + 1:].removeprefix('text_model.'): v for k, v in trained.items()\n"
      "            if k.startswith(component + '.')}\n"
      "    got = {k.removeprefix('text_model.'): v for k, v in getattr(pipe, component).state_dict().items()\n"
      "           if not k.endswith('position_ids')}\n"
      "    assert set(got) == set(want), (component, sorted(set(got) ^ set(want))[:5])\n"
      "    assert all(torch.equal(got[k], want[k]) for k in want), component\n"
      "assert type(pipe.text_encoder_2).__name__ == 'CLIPTextModelWithProjection'\n"
      "assert pipe.tokenizer_2.pad_token == '!'\n"
      "print('OK')\n";
  const std::string script = test::write_text(dir / "check_export.py", check);
  ASSERT_EQ(test::run_command(test::env_or_fail("SDTRAIN_PYTHON") + " " + script + " " + exported.string() +
                                  " " + (one / "model.safetensors").string(),
                              &output),
            0)
      << output;
  EXPECT_NE(output.find("OK"), std::string::npos) << output;

  // sdsample rebuilds the run's SDXL model from the checkpoint and samples it.
  ASSERT_EQ(test::run_command((test::binary_dir() / "bin" / "sdsample").string() + " --model " + one.string() +
                                  " --prompt 'a red square' --n-samples 1 --steps 3 --sampler euler --H 32 --W 32"
                                  " --device cpu --outdir " + (dir / "samples").string(),
                              &output),
            0)
      << output;
  EXPECT_TRUE(fs::exists(dir / "samples" / "samples" / "00000.png"));
}

}  // namespace
}  // namespace sdtrain

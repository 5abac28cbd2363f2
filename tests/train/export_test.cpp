// final_export: after a short run of a tiny Stable Diffusion model the exported diffusers folder
// loads with diffusers (pipeline and UNet) and holds the final checkpoint's EMA weights; an
// existing folder is refused before training; a model without an autoencoder is refused.
#include <gtest/gtest.h>

#include <filesystem>

#include "framework/dist/process_group.h"
#include "framework/train/trainer.h"
#include "sdtrain/errors.h"
#include "tests/common/test_env.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

using test::process_group;

std::string tiny_sd(const std::string& first_stage) {
  return "model { type: \"stable_diffusion\" options { [type.googleapis.com/sdtrain.StableDiffusionOptions] {\n"
         "  first_stage: " + first_stage + "\n"
         "  unet { sample_size: 4 in_channels: " + (first_stage == "VAE" ? "4" : "3") +
         " out_channels: " + (first_stage == "VAE" ? "4" : "3") +
         " block_out_channels: [32, 64] layers_per_block: 1 cross_attention_dim: 32 attention_head_dim: 8\n"
         "         norm_num_groups: 32 down_block_types: [\"CrossAttnDownBlock2D\", \"DownBlock2D\"]\n"
         "         up_block_types: [\"UpBlock2D\", \"CrossAttnUpBlock2D\"] }\n"
         "  vae { block_out_channels: [32, 32, 32, 32] layers_per_block: 1 sample_size: 32 }\n"
         "  text_encoder { hidden_size: 32 intermediate_size: 37 num_hidden_layers: 2 num_attention_heads: 4 }\n"
         "} } }\n";
}

LoadedConfig make_config(const fs::path& dir, const std::string& first_stage) {
  const std::string text = "plugin_libraries: \"" + test::library("sdtrain_test_plugins").string() + "\"\n" +
                           "run { output_dir: \"out\" seed: 3 max_steps: 3 val_every_n_epochs: 0 "
                           "checkpoint_every_n_steps: 0 device: \"cpu\" }\n" + tiny_sd(first_stage) +
                           "data { train { type: \"test_colors\" options { "
                           "[type.googleapis.com/sdtrain_test.ColorsOptions] { count: 8 size: 32 } } } "
                           "batch_size: 2 num_workers: 1 transforms { resolution: 32 } }\n"
                           "optimizer { base_learning_rate: 1e-3 }\n"
                           "lr_schedule { type: \"constant\" }\n"
                           "gradient_accumulation_steps: 1\n"
                           "ema { decay: 0.9 }\n"
                           "final_export { folder: \"diffusers\" }\n";
  return load_train_config(test::write_text(dir / "cfg.pbtxt", text), {});
}

TEST(FinalExport, DiffusersFolderHoldsTheFinalEmaWeights) {
  const fs::path dir = test::scratch_dir();
  auto comm = make_mpi_communicator(process_group().info(), 60.0);
  LoadedConfig config = make_config(dir, "VAE");
  {
    Trainer trainer(config, process_group().info(), *comm);
    EXPECT_EQ(trainer.export_folder(), (dir / "out" / "diffusers").string());
    trainer.fit();
  }
  const fs::path checkpoint = dir / "out" / "checkpoints" / "step-00000003";
  for (const char* file : {"model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                           "vae/config.json", "text_encoder/config.json", "tokenizer/vocab.json",
                           "scheduler/scheduler_config.json"}) {
    EXPECT_TRUE(fs::exists(dir / "out" / "diffusers" / file)) << file;
  }
  std::string output;
  const std::string command = test::env_or_fail("SDTRAIN_PYTHON") + " " +
                              (test::source_dir() / "tests" / "train" / "check_export.py").string() + " " +
                              (dir / "out" / "diffusers").string() + " --equals " +
                              (checkpoint / "ema.safetensors").string() + " --differs " +
                              (checkpoint / "model.safetensors").string();
  EXPECT_EQ(test::run_command(command, &output), 0) << command << "\n" << output;

  // The folder now exists: a second run is refused before it trains, naming the folder.
  try {
    Trainer again(config, process_group().info(), *comm);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& error) {
    EXPECT_NE(std::string(error.what()).find((dir / "out" / "diffusers").string() + " already exists"),
              std::string::npos)
        << error.what();
  }
}

TEST(FinalExport, PixelSpaceModelIsRefusedBeforeTraining) {
  const fs::path dir = test::scratch_dir();
  auto comm = make_mpi_communicator(process_group().info(), 60.0);
  LoadedConfig config = make_config(dir, "PIXELS");
  try {
    Trainer trainer(config, process_group().info(), *comm);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& error) {
    EXPECT_NE(std::string(error.what()).find("final_export.folder: stable_diffusion with first_stage: PIXELS"),
              std::string::npos)
        << error.what();
  }
}

}  // namespace
}  // namespace sdtrain

// sdsample on a training run's checkpoint: the run's model is rebuilt from the config stored in
// the checkpoint, with the trained (or EMA) UNet and the run's own randomly initialised frozen
// parts; a corrupted checkpoint is refused by name.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <torch/torch.h>

#include "framework/config/config_loader.h"
#include "framework/data/image_codec.h"
#include "framework/io/safetensors_reader.h"
#include "framework/registry/registry.h"
#include "sdtrain/model.h"
#include "tests/common/test_env.h"

namespace fs = std::filesystem;

namespace sdtrain {
namespace {

std::string bin(const char* name) { return (test::binary_dir() / "bin" / name).string(); }

/// Trains the demo config (tiny pixel-space SD, generated data) for 2 steps into `dir`, from a
/// copy of the config in `dir` so that its relative paths point there, with `extra` --set
/// overrides; returns the checkpoint.
fs::path train_tiny_run(const fs::path& dir, const std::string& extra = "") {
  std::string output;
  EXPECT_EQ(test::run_command(bin("sddemodata") + " --out " + (dir / "runs/demo/data").string() +
                                  " --count 16 --size 32 --seed 1",
                              &output),
            0)
      << output;
  fs::create_directories(dir / "configs");
  fs::copy_file(test::source_dir() / "configs" / "demo.pbtxt", dir / "configs" / "demo.pbtxt");
  EXPECT_EQ(test::run_command(bin("sdtrain") + " --config " + (dir / "configs" / "demo.pbtxt").string() +
                                  " --set run.max_steps=2 --set run.checkpoint_every_n_steps=0"
                                  " --set data.batch_size=4 --set data.num_workers=1" + extra,
                              &output),
            0)
      << output;
  return dir / "runs/demo/train/checkpoints/step-00000002";
}

std::string sample_command(const fs::path& model, const fs::path& outdir, const std::string& extra = "") {
  return bin("sdsample") + " --model " + model.string() + " --prompt 'a red circle on a white background'" +
         " --n-samples 1 --steps 3 --sampler ddim --seed 5 --H 32 --W 32 --device cpu --outdir " + outdir.string() +
         " " + extra;
}

TEST(SdsampleCheckpoint, SamplesTheTrainedAndTheEmaWeights) {
  const fs::path dir = test::scratch_dir();
  const fs::path checkpoint = train_tiny_run(dir);
  ASSERT_TRUE(fs::exists(checkpoint / "manifest.json")) << checkpoint;
  // The checkpoint is used from elsewhere: relative paths resolve against the run's config folder.
  std::string output;
  ASSERT_EQ(test::run_command("cd / && " + sample_command(checkpoint, dir / "raw"), &output), 0) << output;
  ASSERT_EQ(test::run_command("cd / && " + sample_command(checkpoint, dir / "ema", "--use-ema"), &output), 0) << output;
  const Image raw = read_image_file((dir / "raw/samples/00000.png").string(), 0);
  const Image ema = read_image_file((dir / "ema/samples/00000.png").string(), 0);
  EXPECT_EQ(raw.width, 32);
  EXPECT_EQ(raw.height, 32);
  // Two steps in, the EMA (LitEma warm-up: decay 0.1, then 0.18) is far from the trained weights.
  EXPECT_NE(raw.pixels, ema.pixels);
}

/// sdsample's first image from `checkpoint` against the image the trainer's own model draws for the
/// same settings (StableDiffusionModel::sample: the run's frozen parts and training schedule).
void expect_sdsample_draws_the_trainers_image(const fs::path& dir, const fs::path& checkpoint,
                                              const std::vector<std::string>& overrides) {
  std::string output;
  ASSERT_EQ(test::run_command(sample_command(checkpoint, dir / "raw"), &output), 0) << output;
  const Image sampled = read_image_file((dir / "raw/samples/00000.png").string(), 0);

  LoadedConfig loaded = load_train_config((dir / "configs" / "demo.pbtxt").string(), overrides);
  PluginContext context;
  context.base_dir = loaded.base_dir;
  torch::manual_seed(loaded.config.run().seed());  // as the Trainer does before creating the model
  std::unique_ptr<Model> model = Registry<Model>::instance().create(loaded.config.model(), context, "model");
  {
    torch::NoGradGuard no_grad;
    SafetensorsReader weights((checkpoint / "model.safetensors").string());
    for (auto& item : model->trainable_module().named_parameters()) item.value().copy_(weights.tensor(item.key()));
  }
  SampleRequest request;  // the settings of sample_command (sdsample's defaults otherwise)
  request.prompts = {"a red circle on a white background"};
  request.steps = 3;
  request.sampler = "ddim";
  request.seed = 5;
  request.height = request.width = 32;
  const Image expected = model->sample(request).at(0);
  EXPECT_EQ(sampled.pixels, expected.pixels);
}

// A run without pretrained weights initialises its frozen text encoder from run.seed; sdsample
// must rebuild that same encoder, or the prompts' conditioning is another network's (the demo's
// colour words were ignored that way). sdsample's image equals the trainer's own model's.
TEST(SdsampleCheckpoint, RandomlyInitialisedFrozenPartsAreTheTrainersOwn) {
  const fs::path dir = test::scratch_dir();
  expect_sdsample_draws_the_trainers_image(dir, train_tiny_run(dir), {});
}

// A v-prediction run is sampled as one: sdsample takes the checkpoint's training schedule, not
// the sampler's epsilon defaults (the image then equals the trainer's validation image).
TEST(SdsampleCheckpoint, SamplesUnderTheRunsTrainingSchedule) {
  const fs::path dir = test::scratch_dir();
  const std::vector<std::string> v_prediction = {
      "model.options.noise_scheduler.type=ddpm",
      "model.options.noise_scheduler.options.schedule.prediction_type=V_PREDICTION"};
  std::string sets;
  for (const auto& set : v_prediction) sets += " --set " + set;
  const fs::path checkpoint = train_tiny_run(dir, sets);
  expect_sdsample_draws_the_trainers_image(dir, checkpoint, v_prediction);
  std::string output;
  EXPECT_EQ(test::run_command(sample_command(checkpoint, dir / "refused", "--prediction-type epsilon"), &output), 2)
      << output;
  EXPECT_NE(output.find("training checkpoint"), std::string::npos) << output;
}

void flip_last_bytes(const fs::path& file) {
  std::fstream stream(file, std::ios::in | std::ios::out | std::ios::binary);
  stream.seekp(-3, std::ios::end);
  stream.put('\x7f');
}

// sdsample verifies what it reads (trainer_state.json and the chosen weights) and nothing else:
// a damaged optimizer shard, or trained weights when sampling the EMA, do not stop it.
TEST(SdsampleCheckpoint, CorruptedCheckpointIsRefusedByName) {
  const fs::path dir = test::scratch_dir();
  const fs::path checkpoint = train_tiny_run(dir);
  flip_last_bytes(checkpoint / "optimizer-rank-00000-of-00001.safetensors");
  flip_last_bytes(checkpoint / "model.safetensors");
  std::string output;
  EXPECT_EQ(test::run_command(sample_command(checkpoint, dir / "ema", "--use-ema"), &output), 0) << output;
  EXPECT_EQ(test::run_command(sample_command(checkpoint, dir / "out"), &output), 2) << output;
  EXPECT_NE(output.find((checkpoint / "model.safetensors").string() + ": SHA-256"), std::string::npos) << output;
  EXPECT_FALSE(fs::exists(dir / "out"));
  flip_last_bytes(checkpoint / "ema.safetensors");
  EXPECT_EQ(test::run_command(sample_command(checkpoint, dir / "ema2", "--use-ema"), &output), 2) << output;
  EXPECT_NE(output.find((checkpoint / "ema.safetensors").string() + ": SHA-256"), std::string::npos) << output;
}

}  // namespace
}  // namespace sdtrain

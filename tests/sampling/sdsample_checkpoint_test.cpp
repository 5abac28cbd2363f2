// sdsample on a training run's checkpoint: the run's model is rebuilt from the config stored in
// the checkpoint, with the trained (or EMA) UNet; a corrupted checkpoint is refused by name.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "framework/data/image_codec.h"
#include "tests/common/test_env.h"

namespace fs = std::filesystem;

namespace sdtrain {
namespace {

std::string bin(const char* name) { return (test::binary_dir() / "bin" / name).string(); }

/// Trains the demo config (tiny pixel-space SD, generated data) for 2 steps into `dir`, from a
/// copy of the config in `dir` so that its relative paths point there; returns the checkpoint.
fs::path train_tiny_run(const fs::path& dir) {
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
                                  " --set data.batch_size=4 --set data.num_workers=1",
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

TEST(SdsampleCheckpoint, CorruptedCheckpointIsRefusedByName) {
  const fs::path dir = test::scratch_dir();
  const fs::path checkpoint = train_tiny_run(dir);
  {
    std::fstream file(checkpoint / "model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(-3, std::ios::end);
    file.put('\x7f');
  }
  std::string output;
  EXPECT_EQ(test::run_command(sample_command(checkpoint, dir / "out"), &output), 2) << output;
  EXPECT_NE(output.find("model.safetensors"), std::string::npos) << output;
  EXPECT_FALSE(fs::exists(dir / "out"));
}

}  // namespace
}  // namespace sdtrain

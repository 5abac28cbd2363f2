// The tensorboard, csv_logger and image_logger callbacks in a real training run (test plugins):
// TensorBoard's own reader (tests/callbacks/check_tensorboard.py) reads the event files and finds
// the CSV's values and the grid PNGs; the grids hold exactly the images the model drew for each
// prompt and seed, and the train split the batch trained on; a resumed run adds a file instead of
// touching the old one.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "framework/data/image_codec.h"
#include "framework/dist/process_group.h"
#include "framework/train/trainer.h"
#include "plugins/callbacks/callbacks.pb.h"
#include "framework/registry/registry.h"
#include "sdtrain/dataset.h"
#include "sdtrain/errors.h"
#include "tests/common/test_env.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

using test::process_group;

const std::vector<std::string> kPrompts = {"a red square", "a blue square", "a green square"};

LoadedConfig make_config(const fs::path& dir, const std::vector<std::string>& overrides) {
  std::string prompts;
  for (const auto& prompt : kPrompts) prompts += "prompts: \"" + prompt + "\" ";
  const std::string text =
      "plugin_libraries: \"" + test::library("sdtrain_test_plugins").string() + "\"\n" +
      "run { output_dir: \"out\" seed: 5 log_every_n_steps: 2 val_every_n_epochs: 1 checkpoint_every_n_steps: 0 }\n"
      "model { type: \"test_tiny_denoiser\" }\n"
      "data { train { type: \"test_colors\" options { [type.googleapis.com/sdtrain_test.ColorsOptions] { count: 16 } } }\n"
      "       validation { type: \"text_only\" options { [type.googleapis.com/sdtrain.TextOnlyOptions] { " +
      prompts +
      "} } }\n"
      "       batch_size: 4 num_workers: 1 transforms { resolution: 16 } }\n"
      "lr_schedule { type: \"constant\" }\n"
      "gradient_accumulation_steps: 1\n"
      "callbacks { type: \"csv_logger\" }\n"
      "callbacks { type: \"image_logger\" options { [type.googleapis.com/sdtrain.ImageLoggerOptions] { columns: 2 steps: 3 } } }\n"
      "callbacks { type: \"tensorboard\" }\n";
  return load_train_config(test::write_text(dir / "cfg.pbtxt", text), overrides);
}

void train(const fs::path& dir, const std::vector<std::string>& overrides) {
  LoadedConfig config = make_config(dir, overrides);
  auto comm = make_mpi_communicator(process_group().info(), 60.0);
  Trainer trainer(config, process_group().info(), *comm);
  trainer.fit();
}

/// Runs the TensorBoard reader check over out/ (its event files, metrics.csv and validation
/// grids) with `more` of its options, failing the test on error.
void expect_tensorboard_reads(const fs::path& out, const std::string& more) {
  const std::string command = test::env_or_fail("SDTRAIN_PYTHON") + " " +
                              (test::source_dir() / "tests" / "callbacks" / "check_tensorboard.py").string() +
                              " --logdir " + (out / "tensorboard").string() + " --csv " +
                              (out / "metrics.csv").string() + " --grids " + (out / "images" / "validation").string() +
                              " " + more;
  std::string output;
  EXPECT_EQ(test::run_command(command, &output), 0) << output;
}

/// The names of the PNG files in `folder`, sorted.
std::vector<std::string> png_names(const fs::path& folder) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(folder)) {
    if (entry.path().extension() == ".png") names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

/// The test model's image for (prompt, seed): pixel byte p = (29 * |prompt| + 53 * seed + p) mod 256.
std::uint8_t pattern(const std::string& prompt, std::uint64_t seed, std::size_t p) {
  return static_cast<std::uint8_t>((prompt.size() * 29 + seed * 53 + p) % 256);
}

TEST(TensorBoardImageLogger, RunIsReadByTensorBoardAndGridsHoldEachPromptsSample) {
  const fs::path dir = test::scratch_dir();
  // 16 samples / batch 4 = 4 steps per epoch; validation after epochs 0 and 1 (steps 4 and 8).
  train(dir, {"run.max_steps=8"});
  const fs::path out = dir / "out";
  const fs::path grids = out / "images" / "validation";
  ASSERT_TRUE(fs::exists(grids / "samples_gs-000004_e-000000_b-000000.png"));
  ASSERT_TRUE(fs::exists(grids / "samples_gs-000008_e-000001_b-000000.png"));

  const Image grid = read_image_file((grids / "samples_gs-000008_e-000001_b-000000.png").string(), 0);
  // 3 images of 16 px, 2 columns, make_grid padding 2: (2 * 18 + 2) x (2 * 18 + 2).
  ASSERT_EQ(grid.width, 38);
  ASSERT_EQ(grid.height, 38);
  for (std::size_t i = 0; i < kPrompts.size(); ++i) {
    const int x0 = static_cast<int>(i % 2) * 18 + 2;
    const int y0 = static_cast<int>(i / 2) * 18 + 2;
    int wrong = 0;
    for (int y = 0; y < 16; ++y) {
      for (int x = 0; x < 16; ++x) {
        for (int c = 0; c < 3; ++c) {
          const std::uint8_t got = grid.pixels[((y0 + y) * grid.width + x0 + x) * 3 + c];
          wrong += got != pattern(kPrompts[i], 42 + i, (y * 16 + x) * 3 + c);
        }
      }
    }
    EXPECT_EQ(wrong, 0) << "cell " << i << " (" << kPrompts[i] << ") is not the sample of seed " << 42 + i;
  }
  std::ifstream sidecar(grids / "samples_gs-000008_e-000001_b-000000.txt");
  std::string line;
  std::vector<std::string> listed;
  while (std::getline(sidecar, line)) listed.push_back(line);
  EXPECT_EQ(listed, kPrompts);

  expect_tensorboard_reads(out, "--images 2");
}

// The reference's cadence: grids every N steps and after the first, besides validation's.
TEST(TensorBoardImageLogger, StepCadenceDrawsGridsEveryNStepsAndAtTheFirst) {
  const fs::path dir = test::scratch_dir();
  train(dir, {"run.max_steps=6", "callbacks[1].options.every_n_steps=5", "callbacks[1].options.log_first_step=true"});
  const fs::path grids = dir / "out" / "images" / "validation";
  const std::vector<std::string> names = png_names(grids);
  // Steps 1 and 5 (micro-batches 1 and 1 of epochs 0 and 1) by the cadence; step 4 by the
  // validation after epoch 0 (4 steps an epoch).
  EXPECT_EQ(names, (std::vector<std::string>{"samples_gs-000001_e-000000_b-000001.png",
                                             "samples_gs-000004_e-000000_b-000000.png",
                                             "samples_gs-000005_e-000001_b-000001.png"}));
  const Image grid = read_image_file((grids / "samples_gs-000005_e-000001_b-000001.png").string(), 0);
  EXPECT_EQ(grid.width, 38);
}

/// Cell `index` of a make_grid grid of `size`-pixel images, `columns` per row, padding 2.
Image grid_cell(const Image& grid, int index, int size, int columns) {
  Image cell;
  cell.width = cell.height = size;
  cell.channels = 3;
  const int x0 = (index % columns) * (size + 2) + 2;
  const int y0 = (index / columns) * (size + 2) + 2;
  for (int y = 0; y < size; ++y) {
    const auto* row = grid.pixels.data() + (static_cast<std::size_t>(y0 + y) * grid.width + x0) * 3;
    cell.pixels.insert(cell.pixels.end(), row, row + size * 3);
  }
  return cell;
}

Image mirrored(const Image& image) {
  Image flipped = image;
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) {
      for (int c = 0; c < 3; ++c) {
        flipped.pixels[(y * image.width + x) * 3 + c] = image.pixels[(y * image.width + image.width - 1 - x) * 3 + c];
      }
    }
  }
  return flipped;
}

std::vector<std::string> read_lines(const fs::path& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The reference's train split at the step cadence: rank 0's last micro-batch of the step as
// "inputs" (each cell a training image with its caption, as trained on: perhaps flipped), and
// samples for those captions without and with guidance (image i with seed 42 + i); the captions
// beside every grid; all of them in TensorBoard under train/<kind>. The test model has no
// autoencoder, so there is no reconstruction grid.
TEST(TensorBoardImageLogger, TrainSplitShowsTheBatchAndSamplesForItsCaptions) {
  const fs::path dir = test::scratch_dir();
  train(dir, {"run.max_steps=5", "callbacks[1].options.every_n_steps=5", "callbacks[1].options.log_first_step=true"});
  const fs::path split = dir / "out" / "images" / "train";
  const std::vector<std::string> names = png_names(split);
  const std::vector<std::string> suffixes = {"_gs-000001_e-000000_b-000001.png", "_gs-000005_e-000001_b-000001.png"};
  std::vector<std::string> expected;
  for (const char* kind : {"inputs", "samples", "samples_cfg_scale_3.00"}) {
    for (const std::string& suffix : suffixes) expected.push_back(kind + suffix);
  }
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(names, expected);

  const LoadedConfig config = make_config(dir, {"run.max_steps=5"});
  const auto dataset = Registry<Dataset>::instance().create(config.config.data().train(), PluginContext{}, "data.train");
  for (const std::string& suffix : suffixes) {
    const std::string stem = suffix.substr(0, suffix.size() - 4);
    const std::vector<std::string> captions = read_lines(split / ("inputs" + stem + ".txt"));
    ASSERT_EQ(captions.size(), 4u) << "train_images defaults to 4, the batch size";
    const Image inputs = read_image_file((split / ("inputs" + suffix)).string(), 0);
    ASSERT_EQ(inputs.width, 38);  // 4 images of 16 px, 2 columns
    std::vector<std::size_t> shown;
    for (int i = 0; i < 4; ++i) {
      const Image cell = grid_cell(inputs, i, 16, 2);
      for (std::size_t k = 0; k < dataset->size(); ++k) {
        const Sample sample = dataset->get(k);
        if (sample.caption == captions[i] &&
            (sample.image.pixels == cell.pixels || mirrored(sample.image).pixels == cell.pixels)) {
          shown.push_back(k);
        }
      }
    }
    std::sort(shown.begin(), shown.end());
    EXPECT_EQ(shown.size(), 4u) << "each inputs cell is one training image with the caption listed for it";
    EXPECT_EQ(std::unique(shown.begin(), shown.end()), shown.end()) << "four different samples";
    for (const char* kind : {"samples", "samples_cfg_scale_3.00"}) {
      EXPECT_EQ(read_lines(split / (kind + stem + ".txt")), captions) << kind;
      const Image samples = read_image_file((split / (kind + suffix)).string(), 0);
      for (int i = 0; i < 4; ++i) {
        const Image cell = grid_cell(samples, i, 16, 2);
        int wrong = 0;
        for (std::size_t p = 0; p < cell.pixels.size(); ++p) wrong += cell.pixels[p] != pattern(captions[i], 42 + i, p);
        EXPECT_EQ(wrong, 0) << kind << " cell " << i << " is not the sample of '" << captions[i] << "', seed " << 42 + i;
      }
    }
  }
  expect_tensorboard_reads(dir / "out", "--train-grids " + split.string());
}

TEST(TensorBoardImageLogger, ResumedRunWritesANewEventFile) {
  const fs::path dir = test::scratch_dir();
  train(dir, {"run.max_steps=4"});
  train(dir, {"run.max_steps=8", "run.resume=auto"});
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir / "out" / "tensorboard")) {
    files += entry.path().filename().string().rfind("events.out.tfevents.", 0) == 0;
  }
  EXPECT_EQ(files, 2);
  expect_tensorboard_reads(dir / "out", "--images 2");
}

// The validation loss reaches both logs: validation_metrics.csv (long rows) and TensorBoard scalars
// "val/loss" at the validation's step, equal to what the trainer computed.
TEST(TensorBoardImageLogger, ValidationLossIsLoggedToCsvAndTensorBoard) {
  const fs::path dir = test::scratch_dir();
  // 16 samples, a quarter held out: 12 / batch 4 = 3 steps per epoch, validations at 3 and 6.
  LoadedConfig config = make_config(dir, {"run.max_steps=6", "data.validation_loss.held_out_fraction=0.25"});
  auto comm = make_mpi_communicator(process_group().info(), 60.0);
  Trainer trainer(config, process_group().info(), *comm);
  trainer.fit();
  const std::map<std::string, double> last = trainer.metrics();

  const fs::path out = dir / "out";
  std::ifstream csv(out / "validation_metrics.csv");
  std::vector<std::string> lines;
  for (std::string line; std::getline(csv, line);) lines.push_back(line);
  // EMA is on by default: val/loss (trained weights) and val/loss_ema per validation.
  ASSERT_EQ(lines.size(), 5u) << "header + two metrics per validation";
  EXPECT_EQ(lines[0], "step,epoch,metric,value");
  EXPECT_EQ(lines[1].rfind("3,0,val/loss,", 0), 0u) << lines[1];
  EXPECT_EQ(lines[2].rfind("3,0,val/loss_ema,", 0), 0u) << lines[2];
  const std::vector<std::pair<std::string, std::string>> final_rows = {{lines[3], "val/loss"}, {lines[4], "val/loss_ema"}};
  for (const auto& [line, metric] : final_rows) {
    const std::string prefix = "6,1," + metric + ",";
    ASSERT_EQ(line.rfind(prefix, 0), 0u) << line;
    EXPECT_EQ(std::stod(line.substr(prefix.size())), last.at(metric)) << line;
  }

  expect_tensorboard_reads(out, "--images 2 --validation-csv " + (out / "validation_metrics.csv").string());
}

TEST(TensorBoardImageLogger, ConfigErrorsNameTheField) {
  const fs::path dir = test::scratch_dir();
  auto comm = make_mpi_communicator(process_group().info(), 60.0);
  LoadedConfig no_validation = make_config(dir, {"run.max_steps=1"});
  no_validation.config.mutable_data()->clear_validation();
  try {
    // Refused when the run starts, before its first step.
    Trainer trainer(no_validation, process_group().info(), *comm);
    trainer.fit();
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("data.validation"), std::string::npos) << e.what();
  }
  LoadedConfig bad_sampler = make_config(dir, {"run.max_steps=1"});
  ImageLoggerOptions options;
  ASSERT_TRUE(bad_sampler.config.callbacks(1).options().UnpackTo(&options));
  options.set_sampler("no_such_sampler");
  bad_sampler.config.mutable_callbacks(1)->mutable_options()->PackFrom(options);
  try {
    Trainer trainer(bad_sampler, process_group().info(), *comm);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("no_such_sampler"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sdtrain

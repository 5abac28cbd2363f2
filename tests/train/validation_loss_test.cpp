// The validation loss: the mean of Model::training_loss over the held-out set at fixed per-sample
// seeds, identical from one evaluation to the next, reported to callbacks; the held-out split.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "framework/data/subset_dataset.h"
#include "framework/data/transforms.h"
#include "framework/dist/process_group.h"
#include "framework/registry/registry.h"
#include "framework/train/trainer.h"
#include "tests/common/test_env.h"
#include "test_plugins.pb.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

using test::process_group;

const char* const kHeldOut =
    "validation_loss { dataset { type: \"test_colors\" options { "
    "[type.googleapis.com/sdtrain_test.ColorsOptions] { count: 10 size: 20 } } } batch_size: 3 }";

LoadedConfig make_config(const fs::path& dir, const std::string& validation, const std::vector<std::string>& overrides) {
  const std::string text = "plugin_libraries: \"" + test::library("sdtrain_test_plugins").string() + "\"\n" +
                           "run { output_dir: \"out\" seed: 5 val_every_n_epochs: 1 checkpoint_every_n_steps: 0 }\n"
                           "model { type: \"test_tiny_denoiser\" }\n"
                           "data { train { type: \"test_colors\" } batch_size: 4 num_workers: 1 "
                           "transforms { resolution: 16 } " + validation + " }\n"
                           "optimizer { base_learning_rate: 0.01 }\n"
                           "lr_schedule { type: \"constant\" }\n"
                           "gradient_accumulation_steps: 1\n"
                           "callbacks { type: \"test_recorder\" }\n";
  return load_train_config(test::write_text(dir / "cfg.pbtxt", text), overrides);
}

TEST(ValidationLoss, IsTheMeanTrainingLossAtFixedSeedsAndRepeats) {
  const fs::path dir = test::scratch_dir();
  auto comm = make_mpi_communicator(process_group().info(), 60.0);
  LoadedConfig config = make_config(dir, kHeldOut, {"run.max_steps=1"});
  Trainer trainer(config, process_group().info(), *comm);
  const std::map<std::string, double> first = trainer.evaluate_validation_loss();
  const std::map<std::string, double> second = trainer.evaluate_validation_loss();
  ASSERT_EQ(first.count("val/loss"), 1u);
  ASSERT_EQ(first.count("val/loss_ema"), 1u);
  EXPECT_EQ(first, second) << "fixed noise and timesteps: nothing changes without training";
  EXPECT_EQ(trainer.metrics(), first);

  // The definition, one sample at a time: held-out sample i, centre-cropped and unflipped, with
  // the seed ValidationLoss::sample_seed(run.seed, i).
  PluginContext context;
  auto held_out = Registry<Dataset>::instance().create(config.config.data().validation_loss().dataset(), context, "x");
  ASSERT_EQ(held_out->size(), 10u);
  const TransformConfig& transforms = trainer.validation_loss()->transforms();
  EXPECT_EQ(transforms.crop(), TransformConfig::CENTER);
  EXPECT_FALSE(transforms.random_flip());
  double sum = 0;
  torch::NoGradGuard no_grad;
  for (int64_t i = 0; i < 10; ++i) {
    const Sample sample = held_out->get(static_cast<std::size_t>(i));
    Batch batch;
    batch.pixels = apply_transforms(sample.image, transforms, 0).unsqueeze(0);
    batch.captions = {sample.caption};
    batch.keys = {sample.key};
    batch.seeds = {ValidationLoss::sample_seed(5, i)};
    sum += trainer.model().training_loss(batch).item<double>();
  }
  EXPECT_NEAR(first.at("val/loss"), sum / 10, 1e-5 * sum / 10);
  // Before any update the EMA equals the weights.
  EXPECT_EQ(first.at("val/loss_ema"), first.at("val/loss"));
}

TEST(ValidationLoss, RunsEveryValEpochAndCallbacksReadIt) {
  const fs::path dir = test::scratch_dir();
  auto comm = make_mpi_communicator(process_group().info(), 60.0);
  // 32 training samples / batch 4: 8 steps an epoch; 16 steps = validation after epochs 1 and 2.
  LoadedConfig config = make_config(dir, kHeldOut, {"run.max_steps=16"});
  Trainer trainer(config, process_group().info(), *comm);
  trainer.fit();
  std::ifstream in(dir / "out" / "test_metrics.txt");
  std::vector<std::tuple<int64_t, std::string, double>> seen;
  int64_t step = 0;
  std::string name;
  double value = 0;
  while (in >> step >> name >> value) seen.emplace_back(step, name, value);
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0], std::make_tuple(int64_t{8}, std::string("val/loss"), std::get<2>(seen[0])));
  EXPECT_EQ(std::get<0>(seen[2]), 16);
  EXPECT_EQ(std::get<1>(seen[3]), "val/loss_ema");
  EXPECT_EQ(std::get<2>(seen[2]), trainer.metrics().at("val/loss"));
  EXPECT_EQ(std::get<2>(seen[3]), trainer.metrics().at("val/loss_ema"));
  EXPECT_LT(std::get<2>(seen[2]), std::get<2>(seen[0])) << "the held-out loss falls while training";
}

TEST(ValidationLoss, HeldOutFractionSplitsTheTrainingSet) {
  const fs::path dir = test::scratch_dir();
  auto comm = make_mpi_communicator(process_group().info(), 60.0);
  LoadedConfig config = make_config(dir, "validation_loss { held_out_fraction: 0.25 }", {"run.max_steps=1"});
  Trainer trainer(config, process_group().info(), *comm);
  EXPECT_EQ(trainer.validation_loss()->size(), 8);
  EXPECT_EQ(trainer.progress().batches_per_epoch, 6) << "24 samples left to train on, in batches of 4";

  const HeldOutSplit split = split_held_out(32, 0.25, 5);
  EXPECT_EQ(split.held_out.size(), 8u);
  EXPECT_EQ(split.train.size(), 24u);
  std::set<int64_t> all(split.held_out.begin(), split.held_out.end());
  all.insert(split.train.begin(), split.train.end());
  EXPECT_EQ(all.size(), 32u);
  EXPECT_EQ(split_held_out(32, 0.25, 5).held_out, split.held_out);
  EXPECT_NE(split_held_out(32, 0.25, 6).held_out, split.held_out);
  EXPECT_THROW(split_held_out(1, 0.5, 0), ConfigError);
}

TEST(ValidationLoss, ConfigNeedsExactlyOneSource) {
  const fs::path dir = test::scratch_dir();
  try {
    make_config(dir, "validation_loss { batch_size: 2 }", {"run.max_steps=1"});
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& error) {
    EXPECT_NE(std::string(error.what()).find("data.validation_loss: give exactly one of dataset and held_out_fraction"),
              std::string::npos)
        << error.what();
  }
}

}  // namespace
}  // namespace sdtrain

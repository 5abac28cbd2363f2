// The training loop end to end on the test-only tiny denoiser: the loss falls, checkpoints are
// complete and verified, and a resumed run is bitwise the run that never stopped.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "framework/checkpoint/checkpoint_manager.h"
#include "framework/dist/process_group.h"
#include "framework/train/trainer.h"
#include "framework/util/errors.h"
#include "tests/common/test_env.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

using test::process_group;

/// The base config plus `--set` overrides.
LoadedConfig make_config(const fs::path& dir, const std::vector<std::string>& overrides) {
  const std::string text = "plugin_libraries: \"" + test::library("sdtrain_test_plugins").string() + "\"\n" +
                           "run { output_dir: \"out\" seed: 5 log_every_n_steps: 1 val_every_n_epochs: 0 }\n"
                           "model { type: \"test_tiny_denoiser\" }\n"
                           "data { train { type: \"test_colors\" } batch_size: 4 num_workers: 1 "
                           "transforms { resolution: 16 } }\n"
                           "optimizer { base_learning_rate: 0.01 }\n"
                           "lr_schedule { type: \"constant\" }\n"
                           "gradient_accumulation_steps: 1\n";
  const std::string path = test::write_text(dir / "cfg.pbtxt", text);
  return load_train_config(path, overrides);
}

std::unique_ptr<Communicator> communicator() {
  return make_mpi_communicator(process_group().info(), 60.0);
}

TEST(Trainer, LossFallsAndTheFinalCheckpointIsComplete) {
  const fs::path dir = test::scratch_dir();
  LoadedConfig config = make_config(dir, {"run.max_steps=40", "run.checkpoint_every_n_steps=0"});
  auto comm = communicator();
  Trainer trainer(config, process_group().info(), *comm);
  trainer.fit();
  const auto& losses = trainer.loss_history();
  ASSERT_EQ(losses.size(), 40u);
  const double first = (losses[0] + losses[1] + losses[2] + losses[3]) / 4;
  const double last = (losses[36] + losses[37] + losses[38] + losses[39]) / 4;
  EXPECT_LT(last, 0.7 * first) << "first " << first << " last " << last;
  for (const char* file : {"manifest.json", "model.safetensors", "ema.safetensors", "optimizer.safetensors",
                           "trainer_state.json"}) {
    EXPECT_TRUE(fs::exists(dir / "out" / "checkpoints" / "step-00000040" / file)) << file;
  }
}

TEST(Trainer, ResumedRunEqualsTheUninterruptedRun) {
  const fs::path scratch = test::scratch_dir();
  const fs::path straight_dir = scratch / "straight";
  const fs::path resumed_dir = scratch / "resumed";
  auto comm = communicator();
  // Accumulation 2 and epochs of 4 micro-batches (16 samples / batch 4): step 3 ends mid-epoch.
  const std::vector<std::string> common{"gradient_accumulation_steps=2", "data.train.options.count=16",
                                        "run.checkpoint_every_n_steps=3"};
  auto with = [&](std::vector<std::string> more) {
    more.insert(more.begin(), common.begin(), common.end());
    return more;
  };
  LoadedConfig straight_config = make_config(straight_dir, with({"run.max_steps=6"}));
  Trainer straight(straight_config, process_group().info(), *comm);
  straight.fit();

  LoadedConfig first_half = make_config(resumed_dir, with({"run.max_steps=3"}));
  {
    Trainer trainer(first_half, process_group().info(), *comm);
    trainer.fit();
  }
  LoadedConfig second_half = make_config(resumed_dir, with({"run.max_steps=6", "run.resume=auto"}));
  Trainer resumed(second_half, process_group().info(), *comm);
  resumed.fit();

  EXPECT_TRUE(torch::equal(straight.parameters().values(), resumed.parameters().values()));
  EXPECT_TRUE(torch::equal(straight.optimizer().exp_avg_sq(), resumed.optimizer().exp_avg_sq()));
  EXPECT_TRUE(torch::equal(straight.ema()->shadow(), resumed.ema()->shadow()));
  EXPECT_EQ(straight.loss_history(), resumed.loss_history());
}

TEST(Trainer, CorruptCheckpointIsRefusedNamingTheFile) {
  const fs::path dir = test::scratch_dir();
  auto comm = communicator();
  {
    LoadedConfig config = make_config(dir, {"run.max_steps=2"});
    Trainer trainer(config, process_group().info(), *comm);
    trainer.fit();
  }
  const fs::path model = dir / "out" / "checkpoints" / "step-00000002" / "model.safetensors";
  {
    std::fstream file(model, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(-3, std::ios::end);
    file.put('\x5a');
  }
  LoadedConfig resume = make_config(dir, {"run.max_steps=4", "run.resume=auto"});
  Trainer trainer(resume, process_group().info(), *comm);
  try {
    trainer.fit();
    FAIL() << "expected FormatError";
  } catch (const FormatError& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find(model.string() + ": SHA-256"), std::string::npos) << message;
  }
}

TEST(Trainer, LearningRateFollowsScaleLrAndSchedule) {
  const fs::path dir = test::scratch_dir();
  auto comm = communicator();
  LoadedConfig config = make_config(dir, {"run.max_steps=1", "optimizer.scale_lr=true",
                                         "gradient_accumulation_steps=3", "lr_schedule.type=lambda_linear"});
  Trainer trainer(config, process_group().info(), *comm);
  // scale_lr: accumulation 3 x 1 rank x batch 4 x base 0.01; LambdaLinear: 1e-6 at step 0.
  EXPECT_DOUBLE_EQ(trainer.learning_rate(1), 3 * 4 * 0.01);
  EXPECT_DOUBLE_EQ(trainer.learning_rate(0), 3 * 4 * 0.01 * 1e-6);
}

}  // namespace
}  // namespace sdtrain

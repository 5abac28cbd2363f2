// The training loop end to end on the test-only tiny denoiser: the loss falls, checkpoints are
// complete and verified, and a resumed run is bitwise the run that never stopped.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "framework/checkpoint/checkpoint_manager.h"
#include "framework/dist/process_group.h"
#include "framework/io/safetensors_writer.h"
#include "framework/train/trainer.h"
#include "framework/util/errors.h"
#include "framework/util/file_util.h"
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
  for (const char* file : {"manifest.json", "model.safetensors", "ema.safetensors",
                           "optimizer-rank-00000-of-00001.safetensors", "rank-00000.json", "trainer_state.json"}) {
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

/// Rewrites checkpoint `folder`, written by `trainer` at its last step, into the layout sdtrain
/// wrote before per-rank shards: one optimizer.safetensors with <name>.exp_avg / <name>.exp_avg_sq
/// and metadata adam_step, no rank files, a manifest of format 1 listing the four files.
void rewrite_as_legacy_checkpoint(const fs::path& folder, Trainer& trainer) {
  FlatParameters& parameters = trainer.parameters();
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const char* suffix : {".exp_avg", ".exp_avg_sq"}) {
    const torch::Tensor& flat =
        std::string(suffix) == ".exp_avg" ? trainer.optimizer().exp_avg() : trainer.optimizer().exp_avg_sq();
    for (std::size_t i = 0; i < parameters.names().size(); ++i) {
      tensors.emplace_back(parameters.names()[i] + suffix, parameters.view(flat, i));
    }
  }
  save_safetensors((folder / "optimizer.safetensors").string(), tensors,
                   {{"adam_step", std::to_string(trainer.optimizer().step_count())}});
  fs::remove(folder / "optimizer-rank-00000-of-00001.safetensors");
  fs::remove(folder / "rank-00000.json");
  nlohmann::json files = nlohmann::json::array();
  for (const char* name : {"model.safetensors", "ema.safetensors", "optimizer.safetensors", "trainer_state.json"}) {
    files.push_back({{"name", name},
                     {"size", fs::file_size(folder / name)},
                     {"sha256", sha256_file((folder / name).string())}});
  }
  const nlohmann::json state = nlohmann::json::parse(read_file((folder / "trainer_state.json").string()));
  test::write_text(folder / "manifest.json", nlohmann::json{{"format", "sdtrain-checkpoint-1"},
                                                            {"step", state.at("step")},
                                                            {"world_size", 1},
                                                            {"files", files}}
                                                 .dump(2));
}

// Checkpoints of sdtrain before per-rank shards still resume, exactly.
TEST(Trainer, LegacySingleFileOptimizerCheckpointStillResumes) {
  const fs::path scratch = test::scratch_dir();
  auto comm = communicator();
  const std::vector<std::string> common{"gradient_accumulation_steps=2", "data.train.options.count=16",
                                        "run.checkpoint_every_n_steps=3"};
  auto with = [&](std::vector<std::string> more) {
    more.insert(more.begin(), common.begin(), common.end());
    return more;
  };
  LoadedConfig straight_config = make_config(scratch / "straight", with({"run.max_steps=6"}));
  Trainer straight(straight_config, process_group().info(), *comm);
  straight.fit();

  const fs::path resumed_dir = scratch / "legacy";
  LoadedConfig first_half = make_config(resumed_dir, with({"run.max_steps=3"}));
  {
    Trainer trainer(first_half, process_group().info(), *comm);
    trainer.fit();
    rewrite_as_legacy_checkpoint(resumed_dir / "out" / "checkpoints" / "step-00000003", trainer);
  }
  ASSERT_FALSE(fs::exists(resumed_dir / "out" / "checkpoints" / "step-00000003" / "rank-00000.json"));
  LoadedConfig second_half = make_config(resumed_dir, with({"run.max_steps=6", "run.resume=auto"}));
  Trainer resumed(second_half, process_group().info(), *comm);
  resumed.fit();

  EXPECT_TRUE(torch::equal(straight.parameters().values(), resumed.parameters().values()));
  EXPECT_TRUE(torch::equal(straight.optimizer().exp_avg(), resumed.optimizer().exp_avg()));
  EXPECT_TRUE(torch::equal(straight.optimizer().exp_avg_sq(), resumed.optimizer().exp_avg_sq()));
  EXPECT_EQ(straight.optimizer().step_count(), resumed.optimizer().step_count());
  EXPECT_EQ(straight.loss_history(), resumed.loss_history());
}

// Where ranks resume in the epoch: the checkpoint's samples dealt out in the new global batches.
TEST(Trainer, ResumedDataPositionFollowsTheGlobalBatch) {
  TrainingState state;
  state.epoch = 1;
  state.batch_in_epoch = 3;
  state.world_size = 2;
  state.batch_size = 2;
  state.samples_in_epoch = 12;  // 2 ranks x 3 micro-batches of 2
  EXPECT_EQ(resumed_batch_in_epoch(state, 1, 2), 6);
  EXPECT_EQ(resumed_batch_in_epoch(state, 1, 4), 3);
  EXPECT_EQ(resumed_batch_in_epoch(state, 3, 2), 2);
  EXPECT_EQ(resumed_batch_in_epoch(state, 4, 3), 1);
  try {
    resumed_batch_in_epoch(state, 4, 2);
    FAIL() << "expected ConfigError: 12 samples are not whole global batches of 8";
  } catch (const ConfigError& error) {
    EXPECT_NE(std::string(error.what()).find("12 samples into epoch 1"), std::string::npos) << error.what();
  }
  // A checkpoint without rank files: the micro-batch size is taken to be unchanged.
  state.samples_in_epoch = -1;
  EXPECT_EQ(resumed_batch_in_epoch(state, 1, 2), 6);
  EXPECT_EQ(resumed_batch_in_epoch(state, 2, 2), 3);
}

/// Resumes dir/out to step 4; returns the FormatError's message (empty, and a failure, if none).
std::string resume_format_error(const fs::path& dir, Communicator& comm) {
  LoadedConfig resume = make_config(dir, {"run.max_steps=4", "run.resume=auto"});
  Trainer trainer(resume, process_group().info(), comm);
  try {
    trainer.fit();
  } catch (const FormatError& error) {
    return error.what();
  }
  ADD_FAILURE() << "expected FormatError";
  return "";
}

/// Trains 2 steps into dir/out, leaving the step-2 checkpoint for a test to tamper with.
void train_to_step_two(const fs::path& dir, Communicator& comm) {
  LoadedConfig config = make_config(dir, {"run.max_steps=2"});
  Trainer trainer(config, process_group().info(), comm);
  trainer.fit();
}

TEST(Trainer, CorruptCheckpointIsRefusedNamingTheFile) {
  const fs::path dir = test::scratch_dir();
  auto comm = communicator();
  train_to_step_two(dir, *comm);
  const fs::path model = dir / "out" / "checkpoints" / "step-00000002" / "model.safetensors";
  {
    std::fstream file(model, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(-3, std::ios::end);
    file.put('\x5a');
  }
  const std::string message = resume_format_error(dir, *comm);
  EXPECT_NE(message.find(model.string() + ": SHA-256"), std::string::npos) << message;
}

// A manifest that leaves a rank's shard out (so it would go unverified) is refused, naming it.
TEST(Trainer, ManifestMustListEveryRanksShard) {
  const fs::path dir = test::scratch_dir();
  auto comm = communicator();
  train_to_step_two(dir, *comm);
  const fs::path manifest_path = dir / "out" / "checkpoints" / "step-00000002" / "manifest.json";
  nlohmann::json manifest = nlohmann::json::parse(read_file(manifest_path.string()));
  nlohmann::json kept = nlohmann::json::array();
  for (const auto& file : manifest.at("files")) {
    if (file.at("name") != "optimizer-rank-00000-of-00001.safetensors") kept.push_back(file);
  }
  ASSERT_EQ(kept.size() + 1, manifest.at("files").size());
  manifest["files"] = kept;
  test::write_text(manifest_path, manifest.dump(2));
  const std::string message = resume_format_error(dir, *comm);
  EXPECT_NE(message.find(manifest_path.string() + ": does not list optimizer-rank-00000-of-00001.safetensors"),
            std::string::npos)
      << message;
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

// The training loop end to end on the test-only tiny denoiser: the loss falls, checkpoints are
// complete and verified, and a resumed run is bitwise the run that never stopped.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "framework/checkpoint/checkpoint_manager.h"
#include "framework/dist/process_group.h"
#include "framework/io/safetensors_reader.h"
#include "framework/train/checkpoint_parts.h"
#include "framework/train/trainer.h"
#include "framework/util/file_util.h"
#include "plugins/builtin_plugins.h"
#include "sdtrain/errors.h"
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

TEST(Trainer, TotalStepsIsTheFirstOfTheStepAndEpochLimits) {
  const fs::path dir = test::scratch_dir();
  auto comm = communicator();
  // 16 samples / batch 4 = 4 micro-batches per epoch; accumulation 3 makes 2 steps of an epoch
  // (the last one short), so 5 epochs end at step 10.
  const std::vector<std::string> common{"gradient_accumulation_steps=3", "data.train.options.count=16",
                                        "run.max_epochs=5"};
  auto total_steps = [&](const std::string& max_steps) {
    std::vector<std::string> overrides = common;
    overrides.push_back("run.max_steps=" + max_steps);
    LoadedConfig config = make_config(dir, overrides);
    Trainer trainer(config, process_group().info(), *comm);
    return trainer.progress().total_steps;
  };
  EXPECT_EQ(total_steps("0"), 10);
  EXPECT_EQ(total_steps("7"), 7);
  EXPECT_EQ(total_steps("25"), 10);
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

/// A run on the sharded fixture (tests/data/make_shard_fixtures.py: 14 images of several aspect
/// ratios) through `data_train`, batch 2: 7 micro-batches per epoch without buckets, so step 3 of
/// accumulation 2 ends mid-epoch and step 6 in the next epoch. `buckets` (data.buckets, or "")
/// trains at buckets of 96^2 area instead of 16 px squares: 64x64, 64x128 and 128x64.
LoadedConfig sharded_config(const fs::path& dir, const std::string& data_train, const std::string& buckets,
                            const std::vector<std::string>& overrides) {
  anchor_builtin_plugins();  // the webdataset and parquet plugins
  const std::string text = "plugin_libraries: \"" + test::library("sdtrain_test_plugins").string() + "\"\n" +
                           "run { output_dir: \"out\" seed: 5 log_every_n_steps: 1 val_every_n_epochs: 0 "
                           "checkpoint_every_n_steps: 3 }\n"
                           "model { type: \"test_tiny_denoiser\" }\n"
                           "data { train { " + data_train + " } batch_size: 2 num_workers: 2 shuffle_buffer: 4 "
                           "transforms { resolution: " + std::string(buckets.empty() ? "16" : "96") + " } " + buckets +
                           " }\n"
                           "optimizer { base_learning_rate: 0.01 }\n"
                           "lr_schedule { type: \"constant\" }\n"
                           "gradient_accumulation_steps: 2\n";
  return load_train_config(test::write_text(dir / "cfg.pbtxt", text), overrides);
}

/// Kill-and-resume on a sharded dataset equals the run that never stopped: the shard-by-shard
/// order and the loader's position come back from the checkpoint.
void expect_sharded_resume_is_exact(const std::string& data_train, const std::string& buckets,
                                    const std::vector<int64_t>& shard_ends) {
  const fs::path scratch = test::scratch_dir();
  auto comm = communicator();
  LoadedConfig straight_config = sharded_config(scratch / "straight", data_train, buckets, {"run.max_steps=6"});
  Trainer straight(straight_config, process_group().info(), *comm);
  straight.fit();
  {
    LoadedConfig first_half = sharded_config(scratch / "resumed", data_train, buckets, {"run.max_steps=3"});
    Trainer trainer(first_half, process_group().info(), *comm);
    trainer.fit();
  }
  // The rank's state names where it reads next (shard and sample) and what fixes the order.
  const nlohmann::json data = nlohmann::json::parse(
      read_file((test::checkpoint_dir(scratch / "resumed" / "out", 3) / "rank-00000.json").string()))["parts"]["data"];
  EXPECT_EQ(data.at("order_digest").get<std::string>().size(), 64u);
  const int64_t shard = data.at("next_sample").at("shard").get<int64_t>();
  const int64_t index = data.at("next_sample").at("index").get<int64_t>();
  ASSERT_TRUE(shard >= 0 && shard < static_cast<int64_t>(shard_ends.size())) << data;
  EXPECT_TRUE(index < shard_ends[shard] && index >= (shard == 0 ? 0 : shard_ends[shard - 1])) << data;
  LoadedConfig second_half =
      sharded_config(scratch / "resumed", data_train, buckets, {"run.max_steps=6", "run.resume=auto"});
  Trainer resumed(second_half, process_group().info(), *comm);
  resumed.fit();
  ASSERT_EQ(straight.loss_history().size(), 6u);
  EXPECT_EQ(straight.loss_history(), resumed.loss_history());
  EXPECT_TRUE(torch::equal(straight.parameters().values(), resumed.parameters().values()));
  EXPECT_TRUE(torch::equal(straight.ema()->shadow(), resumed.ema()->shadow()));
}

TEST(Trainer, ResumeOnWebDatasetShardsWithBucketsEqualsTheUninterruptedRun) {
  const fs::path shards = test::fixture_dir("data_shards") / "wds";
  expect_sharded_resume_is_exact(
      "type: \"webdataset\" options { [type.googleapis.com/sdtrain.WebDatasetOptions] { shards: \"" +
          (shards / "train-{00000..00002}.tar").string() + "\" } }",
      "buckets { min_side: 64 max_side: 128 }", {5, 10, 14});
}

#ifdef SDTRAIN_WITH_PARQUET
TEST(Trainer, ResumeOnParquetEqualsTheUninterruptedRun) {
  const fs::path files = test::fixture_dir("data_shards") / "parquet";
  expect_sharded_resume_is_exact(
      "type: \"parquet\" options { [type.googleapis.com/sdtrain.ParquetOptions] { files: \"" + files.string() +
          "\" } }",
      "", {5, 7, 12, 14});
}
#endif

// Where ranks resume in the epoch: the checkpoint's samples dealt out in the new global batches.
TEST(Trainer, ResumedDataPositionFollowsTheGlobalBatch) {
  SavedDataPosition saved;
  saved.epoch = 1;
  saved.batch_in_epoch = 3;
  saved.world_size = 2;
  saved.batch_size = 2;  // 2 ranks x 3 micro-batches of 2: 12 samples
  EXPECT_EQ(resumed_batch_in_epoch(saved, 1, 2), 6);
  EXPECT_EQ(resumed_batch_in_epoch(saved, 1, 4), 3);
  EXPECT_EQ(resumed_batch_in_epoch(saved, 3, 2), 2);
  EXPECT_EQ(resumed_batch_in_epoch(saved, 4, 3), 1);
  try {
    resumed_batch_in_epoch(saved, 4, 2);
    FAIL() << "expected ConfigError: 12 samples are not whole global batches of 8";
  } catch (const ConfigError& error) {
    EXPECT_NE(std::string(error.what()).find("12 samples into epoch 1"), std::string::npos) << error.what();
  }
}

/// A part only this test knows: a random tensor file written by every rank and a counter that
/// advances with every save. The checkpoint code is not told about it; the trainer registers it.
class TestOnlyPart final : public Stateful {
 public:
  explicit TestOnlyPart(int64_t seed) : values(torch::randn({5, 3}, torch::Generator(at::detail::createCPUGenerator(seed)))) {}
  void save_state(CheckpointWriter& out) override {
    ++saves;
    out.put_shared({{"saves", saves}, {"note", "test-only part"}});
    out.put_rank({{"rank", out.rank()}});
    out.write_tensors("test-only-rank-" + std::to_string(out.rank()) + ".safetensors", {{"values", values}});
  }
  void load_state(const CheckpointReader& in) override {
    saves = in.shared().at("saves").get<int64_t>();
    EXPECT_EQ(in.rank_state(in.rank()).at("rank").get<int>(), in.rank());
    values = SafetensorsReader(in.file("test-only-rank-" + std::to_string(in.rank()) + ".safetensors"))
                 .tensor("values")
                 .clone();
    loaded = true;
  }
  torch::Tensor values;
  int64_t saves = 0;
  bool loaded = false;
};

// A part added from outside the checkpoint code survives a resume: its JSON state, its rank state
// and its own file come back, verified like every other file.
TEST(Trainer, ATestOnlyStatefulPartSurvivesAResume) {
  const fs::path dir = test::scratch_dir();
  auto comm = communicator();
  TestOnlyPart saved(11);
  {
    LoadedConfig config = make_config(dir, {"run.max_steps=4", "run.checkpoint_every_n_steps=2"});
    Trainer trainer(config, process_group().info(), *comm);
    trainer.add_checkpoint_part("test_only", saved);
    trainer.fit();
  }
  ASSERT_EQ(saved.saves, 2);  // steps 2 and 4
  const fs::path file = dir / "out" / "checkpoints" / "step-00000004" / "test-only-rank-0.safetensors";
  ASSERT_TRUE(fs::exists(file));

  TestOnlyPart restored(12);  // other values until the checkpoint replaces them
  ASSERT_FALSE(torch::equal(saved.values, restored.values));
  LoadedConfig again = make_config(dir, {"run.max_steps=4", "run.resume=auto"});
  Trainer resumed(again, process_group().info(), *comm);
  resumed.add_checkpoint_part("test_only", restored);
  resumed.fit();  // already at step 4: resumes and ends
  EXPECT_TRUE(restored.loaded);
  EXPECT_EQ(restored.saves, 2);
  EXPECT_TRUE(torch::equal(saved.values, restored.values));

  // Its file is verified against the manifest like the others.
  {
    std::fstream stream(file, std::ios::in | std::ios::out | std::ios::binary);
    stream.seekp(-2, std::ios::end);
    stream.put('\x33');
  }
  TestOnlyPart tampered(13);
  Trainer refused(again, process_group().info(), *comm);
  refused.add_checkpoint_part("test_only", tampered);
  try {
    refused.fit();
    FAIL() << "expected FormatError";
  } catch (const FormatError& error) {
    EXPECT_NE(std::string(error.what()).find(file.string() + ": SHA-256"), std::string::npos) << error.what();
  }
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

namespace sdtrain {
namespace {

// A folder named like a checkpoint whose step does not fit int64 is not one of ours: listed
// checkpoints skip it (stoll threw std::out_of_range there, ending --resume auto).
TEST(CheckpointManager, ListSkipsAStepBeyondInt64) {
  const fs::path dir = test::scratch_dir();
  for (const char* name : {"step-00000003", "step-99999999999999999999999"}) {
    fs::create_directories(dir / "checkpoints" / name);
    std::ofstream(dir / "checkpoints" / name / "manifest.json") << "{}";
  }
  auto communicator = make_mpi_communicator(process_group().info(), 60.0);
  const CheckpointManager manager(dir.string(), -1, process_group().info(), *communicator, 60.0);
  EXPECT_EQ(manager.list(), (std::vector<std::string>{(dir / "checkpoints" / "step-00000003").string()}));
}

}  // namespace
}  // namespace sdtrain

// `mpirun -np 2 sdtrain` for real: two ranks of batch B give the weights of one rank of batch 2B
// and of one rank of batch B with accumulation 2.
#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>
#include <iterator>
#include <map>
#include <regex>

#include <nlohmann/json.hpp>

#include "framework/io/safetensors_reader.h"
#include "framework/train/sharded_adamw.h"
#include "framework/util/file_util.h"
#include "plugins/schedulers/lr/lr_schedules.pb.h"
#include "tests/common/test_env.h"
#include "tests/common/test_images.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

using test::mpirun;

/// Trains `steps` steps (6 by default) on the test plugins and returns the final weights file.
/// `extra` is appended to the config (e.g. "distributed { zero_stage1: true }"), `sets` to the
/// command line (e.g. "--set model.options.channels=4").
fs::path train(const fs::path& dir, int ranks, int batch, int accumulation, const std::string& extra = "",
               int steps = 6, const std::string& sets = "") {
  const std::string config =
      test::write_text(dir / "cfg.pbtxt",
                       "plugin_libraries: \"" + test::library("sdtrain_test_plugins").string() + "\"\n" +
                           "run { output_dir: \"out\" seed: 11 max_steps: " + std::to_string(steps) +
                           " checkpoint_every_n_steps: 3 val_every_n_epochs: 0 resume: \"auto\" }\n" + extra + "\n"
                           "model { type: \"test_tiny_denoiser\" }\n"
                           "data { train { type: \"test_colors\" } batch_size: " + std::to_string(batch) +
                           " num_workers: 1 transforms { resolution: 16 } }\n"
                           "optimizer { base_learning_rate: 0.01 }\n"
                           "gradient_accumulation_steps: " + std::to_string(accumulation) + "\n");
  std::string output;
  const int code = test::run_command(mpirun(ranks) + " " + (test::binary_dir() / "bin" / "sdtrain").string() +
                                         " --config " + config + " " + sets, &output);
  EXPECT_EQ(code, 0) << output;
  return test::checkpoint_dir(dir / "out", steps) / "model.safetensors";
}

void expect_same_weights(const fs::path& a, const fs::path& b) {
  SafetensorsReader left(a.string());
  SafetensorsReader right(b.string());
  ASSERT_EQ(left.names(), right.names());
  for (const auto& name : left.names()) {
    const torch::Tensor x = left.tensor(name);
    const torch::Tensor y = right.tensor(name);
    EXPECT_TRUE(torch::allclose(x, y, 1e-5, 1e-6)) << name << " max diff " << (x - y).abs().max().item<double>();
  }
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string shard_name(int rank, int world_size) {
  char name[64];
  std::snprintf(name, sizeof(name), "optimizer-rank-%05d-of-%05d.safetensors", rank, world_size);
  return name;
}

/// Checkpoint `folder` of a run of `world_size` ranks holds one optimizer shard and one rank file
/// per rank, each written by its rank (its log says so), holding shard_range() of the flat state;
/// the manifest lists all of them with their real sizes and SHA-256; no legacy file, no sidecar.
void expect_sharded_checkpoint(const fs::path& folder, int world_size) {
  const nlohmann::json manifest = nlohmann::json::parse(read_text(folder / "manifest.json"));
  EXPECT_EQ(manifest.at("world_size").get<int>(), world_size);
  std::map<std::string, nlohmann::json> listed;
  for (const auto& file : manifest.at("files")) listed[file.at("name").get<std::string>()] = file;
  int64_t numel = 0;
  SafetensorsReader model((folder / "model.safetensors").string());
  for (const auto& [name, tensor] : model.tensors()) numel += tensor.numel();
  const fs::path logs = folder.parent_path().parent_path() / "logs";
  for (int rank = 0; rank < world_size; ++rank) {
    const std::string name = shard_name(rank, world_size);
    char rank_file[32];
    std::snprintf(rank_file, sizeof(rank_file), "rank-%05d.json", rank);
    for (const std::string& file : {name, std::string(rank_file)}) {
      ASSERT_EQ(listed.count(file), 1u) << file << " not in the manifest";
      EXPECT_EQ(listed[file].at("size").get<uint64_t>(), fs::file_size(folder / file)) << file;
      EXPECT_EQ(listed[file].at("sha256").get<std::string>(), sha256_file((folder / file).string())) << file;
    }
    const ShardRange range = shard_range(numel, rank, world_size);
    SafetensorsReader shard((folder / name).string());
    EXPECT_EQ(shard.tensor("exp_avg").numel(), range.size()) << name;
    EXPECT_EQ(shard.tensor("exp_avg_sq").numel(), range.size()) << name;
    EXPECT_EQ(shard.metadata().at("begin"), std::to_string(range.begin)) << name;
    EXPECT_EQ(shard.metadata().at("end"), std::to_string(range.end)) << name;
    EXPECT_EQ(shard.metadata().at("numel"), std::to_string(numel)) << name;
    // Written by its own rank: that rank's log says so, no other rank's does.
    char log_name[32];
    for (int other = 0; other < world_size; ++other) {
      std::snprintf(log_name, sizeof(log_name), "rank-%05d.log", other);
      const bool wrote = read_text(logs / log_name).find("rank " + std::to_string(other) + " wrote " + name) !=
                         std::string::npos;
      EXPECT_EQ(wrote, other == rank) << log_name << " about " << name;
    }
    // Ranks advance in lockstep: every rank file holds rank 0's data position.
    const auto data_position = [&](const std::string& file) {
      return nlohmann::json::parse(read_text(folder / file)).at("parts").at("data");
    };
    EXPECT_EQ(data_position(rank_file).at("batch_in_epoch"), data_position("rank-00000.json").at("batch_in_epoch"));
  }
  EXPECT_FALSE(fs::exists(folder / "optimizer.safetensors"));
  for (const auto& entry : fs::directory_iterator(folder)) {
    EXPECT_EQ(listed.count(entry.path().filename().string()) + (entry.path().filename() == "manifest.json"), 1u)
        << entry.path() << " is in the folder but not in the manifest";
  }
}

/// The whole flat AdamW state of a checkpoint: its shards' exp_avg / exp_avg_sq, concatenated.
std::pair<torch::Tensor, torch::Tensor> whole_optimizer_state(const fs::path& folder, int world_size) {
  std::vector<torch::Tensor> exp_avg, exp_avg_sq;
  for (int rank = 0; rank < world_size; ++rank) {
    SafetensorsReader shard((folder / shard_name(rank, world_size)).string());
    exp_avg.push_back(shard.tensor("exp_avg").clone());
    exp_avg_sq.push_back(shard.tensor("exp_avg_sq").clone());
  }
  return {torch::cat(exp_avg), torch::cat(exp_avg_sq)};
}

TEST(MpiTraining, TwoRanksEqualOneRankWithTheGlobalBatch) {
  const fs::path dir = test::scratch_dir();
  const fs::path two_ranks = train(dir / "two_ranks", 2, 2, 1);
  const fs::path one_rank = train(dir / "one_rank", 1, 4, 1);
  const fs::path accumulated = train(dir / "accumulated", 1, 2, 2);
  expect_same_weights(two_ranks, one_rank);
  expect_same_weights(two_ranks, accumulated);
  // Only rank 0 writes the console log's progress; every rank writes its own log file.
  EXPECT_TRUE(fs::exists(dir / "two_ranks" / "out" / "logs" / "rank-00000.log"));
  EXPECT_TRUE(fs::exists(dir / "two_ranks" / "out" / "logs" / "rank-00001.log"));
}

// ZeRO stage 1: each rank updates its half of the parameters with its half of the AdamW state;
// the weights and the optimizer state equal the unsharded run's. Both write one optimizer shard
// per rank, each rank its own slice (ZeRO: the state it keeps; unsharded: a slice of its copy).
TEST(MpiTraining, ZeroStage1EqualsTheUnshardedOptimizer) {
  const fs::path dir = test::scratch_dir();
  const fs::path sharded = train(dir / "zero", 2, 2, 1, "distributed { zero_stage1: true }");
  const fs::path plain = train(dir / "plain", 2, 2, 1);
  expect_same_weights(sharded, plain);
  for (const fs::path& run : {sharded, plain}) {
    SCOPED_TRACE(run.string());
    expect_sharded_checkpoint(run.parent_path(), 2);
  }
  for (int rank = 0; rank < 2; ++rank) {
    expect_same_weights(sharded.parent_path() / shard_name(rank, 2), plain.parent_path() / shard_name(rank, 2));
  }
  // A one-rank checkpoint is one shard of the whole state, equal to the two halves.
  const fs::path one = train(dir / "one_rank", 1, 4, 1, "distributed { zero_stage1: true }");
  expect_sharded_checkpoint(one.parent_path(), 1);
  const auto halves = whole_optimizer_state(plain.parent_path(), 2);
  const auto whole = whole_optimizer_state(one.parent_path(), 1);
  EXPECT_TRUE(torch::allclose(halves.first, whole.first, 1e-5, 1e-7));
  EXPECT_TRUE(torch::allclose(halves.second, whole.second, 1e-5, 1e-9));
}

// Parameter groups: conv_out's group at learning-rate factor 0 without weight decay stays where it
// started while conv_in's trains; ZeRO-1 on 2 ranks, whose slices cut through the groups, equals
// the unsharded optimizer on 1 rank with the global batch.
TEST(MpiTraining, ParameterGroupsTrainWithTheirOwnSettingsUnderZero) {
  const fs::path dir = test::scratch_dir();
  const std::string groups = "--set model.options.conv_out_lr_factor=0 --set model.options.conv_out_weight_decay=0";
  const fs::path sharded = train(dir / "zero", 2, 2, 1, "distributed { zero_stage1: true }", 6, groups);
  const fs::path one = train(dir / "one_rank", 1, 4, 1, "", 6, groups);
  expect_same_weights(sharded, one);
  SafetensorsReader at_step3((sharded.parent_path().parent_path() / "step-00000003" / "model.safetensors").string());
  SafetensorsReader at_step6(sharded.string());
  for (const char* name : {"conv_out.weight", "conv_out.bias"}) {
    EXPECT_TRUE(torch::equal(at_step3.tensor(name), at_step6.tensor(name))) << name << " trained at LR factor 0";
  }
  EXPECT_FALSE(torch::equal(at_step3.tensor("conv_in.weight"), at_step6.tensor("conv_in.weight")));
  const std::string log = read_text(dir / "zero" / "out" / "logs" / "rank-00000.log");
  EXPECT_NE(log.find("parameter group conv_out: 219 parameters, learning rate x0, weight decay 0"),
            std::string::npos)
      << log;
}

// A checkpoint of 2 ranks resumes on 1 rank (accumulation 2 keeps the global batch): the
// optimizer state is resharded (ZeRO: the one rank reads both shards; unsharded: the same), the
// data position carries over, and the weights equal the run that never stopped; and a checkpoint
// of 1 rank continues on 2 (ZeRO: each reads its half of the one shard).
TEST(MpiTraining, CheckpointResumesAtAnotherWorldSizeWithAndWithoutZero) {
  const fs::path dir = test::scratch_dir();
  for (const std::string& mode : {std::string("zero"), std::string("plain")}) {
    SCOPED_TRACE(mode);
    const std::string extra = mode == "zero" ? "distributed { zero_stage1: true }" : "";
    const fs::path straight = train(dir / mode / "straight", 2, 2, 1, extra);
    train(dir / mode / "shrink", 2, 2, 1, extra, 3);
    const fs::path resumed = train(dir / mode / "shrink", 1, 2, 2, extra);
    expect_same_weights(resumed, straight);
    expect_same_weights(resumed.parent_path() / shard_name(0, 1), train(dir / mode / "one_rank", 1, 2, 2, extra)
                                                                     .parent_path() / shard_name(0, 1));
    EXPECT_NE(read_text(dir / mode / "shrink" / "out" / "logs" / "rank-00000.log").find("at step 3, epoch 0, micro-batch 6\n"),
              std::string::npos)
        << "2 ranks x 3 micro-batches of 2 = 6 micro-batches of 2 on one rank";
    train(dir / mode / "grow", 1, 2, 2, extra, 3);
    const fs::path grown = train(dir / mode / "grow", 2, 2, 1, extra);
    expect_same_weights(grown, straight);
    expect_same_weights(grown.parent_path() / shard_name(1, 2), straight.parent_path() / shard_name(1, 2));
  }
}

/// Trains 4 steps (one epoch) with the image logger, its step cadence at step 4 with a train split
/// of 2; returns the bytes of the validation grid and the train split's grids, by file name.
std::map<std::string, std::string> image_logger_grids(const fs::path& dir, int ranks, int batch) {
  const std::string config =
      test::write_text(dir / "cfg.pbtxt",
                       "plugin_libraries: \"" + test::library("sdtrain_test_plugins").string() + "\"\n" +
                           "run { output_dir: \"out\" max_steps: 4 val_every_n_epochs: 1 checkpoint_every_n_steps: 0 }\n"
                           "model { type: \"test_tiny_denoiser\" }\n"
                           "data { train { type: \"test_colors\" options { "
                           "[type.googleapis.com/sdtrain_test.ColorsOptions] { count: 16 } } }\n"
                           "  validation { type: \"text_only\" options { [type.googleapis.com/sdtrain.TextOnlyOptions] {"
                           " prompts: [\"a red square\", \"a blue square\", \"a green square\"] } } }\n"
                           "  batch_size: " + std::to_string(batch) + " num_workers: 1 transforms { resolution: 16 } }\n"
                           "gradient_accumulation_steps: 1\n"
                           "callbacks { type: \"image_logger\" options { "
                           "[type.googleapis.com/sdtrain.ImageLoggerOptions] { steps: 2 every_n_steps: 4 train_images: 2 } } }\n"
                           "callbacks { type: \"tensorboard\" }\n");
  std::string output;
  const int code = test::run_command(mpirun(ranks) + " " + (test::binary_dir() / "bin" / "sdtrain").string() +
                                         " --config " + config, &output);
  EXPECT_EQ(code, 0) << output;
  std::map<std::string, std::string> grids;
  for (const std::string name : {"validation/samples_gs-000004_e-000000_b-000000.png",
                                 "train/inputs_gs-000004_e-000000_b-000004.png",
                                 "train/samples_gs-000004_e-000000_b-000004.png",
                                 "train/samples_cfg_scale_3.00_gs-000004_e-000000_b-000004.png",
                                 "train/samples_gs-000004_e-000000_b-000004.txt"}) {
    std::ifstream in(dir / "out" / "images" / name, std::ios::binary);
    EXPECT_TRUE(in.good()) << name << "\n" << output;
    grids[name] = std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return grids;
}

// The image logger draws image i on rank i % 2 and gathers on rank 0: the validation grid (pixels
// and tEXt) is byte for byte the one-rank grid, and the run does not trip the collective timeout.
// The train split shows rank 0's first two samples, which with 2 ranks of batch 2 are the first
// two of the one-rank batch of 4 (rank r takes its slice of the global batch): its grids too are
// the one-rank grids, the captions sent from rank 0 to the rank that draws their samples.
TEST(MpiTraining, ValidationGridIsGatheredFromAllRanks) {
  const fs::path dir = test::scratch_dir();
  const auto two = image_logger_grids(dir / "two_ranks", 2, 2);
  const auto one = image_logger_grids(dir / "one_rank", 1, 4);
  for (const auto& [name, bytes] : one) {
    ASSERT_FALSE(bytes.empty()) << name;
    EXPECT_TRUE(two.at(name) == bytes) << "the two-rank " << name << " differs from the one-rank one";
  }
}

/// The "val/loss = X" values rank 0 logged, in order.
std::vector<std::string> logged_validation_losses(const fs::path& log) {
  std::ifstream in(log);
  std::vector<std::string> values;
  const std::regex pattern(R"(val/loss = (\S+))");
  std::string line;
  while (std::getline(in, line)) {
    std::smatch match;
    if (std::regex_search(line, match, pattern)) values.push_back(match[1]);
  }
  return values;
}

TEST(MpiTraining, ValidationLossIsTheSameAtWorldSizeOneAndTwo) {
  // One step at LR factor 0 (the first warm-up step) leaves the weights exactly as initialised,
  // so both runs evaluate the same model; 10 held-out samples in micro-batches of 3 split 2 + 2
  // batches over two ranks (the last one short).
  const fs::path dir = test::scratch_dir();
  auto run = [&](const std::string& name, int ranks) {
    const std::string config = test::write_text(
        dir / name / "cfg.pbtxt",
        "plugin_libraries: \"" + test::library("sdtrain_test_plugins").string() + "\"\n" +
            "run { output_dir: \"out\" seed: 11 max_steps: 1 checkpoint_every_n_steps: 0 val_every_n_epochs: 1 }\n"
            "model { type: \"test_tiny_denoiser\" }\n"
            "data { train { type: \"test_colors\" options { [type.googleapis.com/sdtrain_test.ColorsOptions] "
            "{ count: 4 } } } batch_size: " + std::to_string(4 / ranks) +
            " num_workers: 1 transforms { resolution: 16 } validation_loss { dataset { type: \"test_colors\" "
            "options { [type.googleapis.com/sdtrain_test.ColorsOptions] { count: 10 size: 20 } } } "
            "batch_size: 3 } }\n"
            "lr_schedule { type: \"constant\" options { [type.googleapis.com/sdtrain.ConstantScheduleOptions] "
            "{ warm_up_steps: 10 } } }\n"
            "gradient_accumulation_steps: 1\n");
    std::string output;
    const int code = test::run_command(mpirun(ranks) + " " + (test::binary_dir() / "bin" / "sdtrain").string() +
                                           " --config " + config, &output);
    EXPECT_EQ(code, 0) << output;
    return logged_validation_losses(dir / name / "out" / "logs" / "rank-00000.log");
  };
  const std::vector<std::string> one = run("one_rank", 1);
  const std::vector<std::string> two = run("two_ranks", 2);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one, two) << "bitwise the same value (17 significant digits)";
  EXPECT_GT(std::stod(one[0]), 0.0);
}

/// An image folder of 10 images in three aspect-ratio buckets of area 128^2 (6 square, 3 of
/// aspect 3, 1 of aspect 1/3), captioned alike; returns its path.
fs::path bucket_images(const fs::path& dir) {
  const std::vector<std::pair<int, int>> sizes = {{40, 40}, {40, 40}, {200, 200}, {200, 200}, {128, 128},
                                                  {128, 128}, {96, 32}, {384, 128}, {192, 64}, {30, 90}};
  fs::create_directories(dir);
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    testing::write_test_png((dir / ("img" + std::to_string(i) + ".png")).string(), sizes[i].first, sizes[i].second,
                            static_cast<int>(i));
  }
  return dir;
}

/// Trains on bucket_images with data.buckets (6 steps, checkpoints every 3); returns the exit
/// code, the output in *output.
int train_buckets(const fs::path& dir, const fs::path& images, int ranks, int batch, int accumulation, int steps,
                  std::string* output, const std::string& flags = "") {
  const std::string config = test::write_text(
      dir / "cfg.pbtxt",
      "plugin_libraries: \"" + test::library("sdtrain_test_plugins").string() + "\"\n" +
          "run { output_dir: \"out\" seed: 11 max_steps: " + std::to_string(steps) +
          " checkpoint_every_n_steps: 3 val_every_n_epochs: 0 resume: \"auto\" }\n"
          "model { type: \"test_tiny_denoiser\" }\n"
          "data { train { type: \"image_folder\" options { [type.googleapis.com/sdtrain.ImageFolderOptions] { root: \"" +
          images.string() + "\" caption: \"a picture\" } } }\n"
          "  batch_size: " + std::to_string(batch) + " num_workers: 1 transforms { resolution: 128 }\n"
          "  buckets { min_side: 64 max_side: 256 } }\n"
          "optimizer { base_learning_rate: 0.01 }\n"
          "gradient_accumulation_steps: " + std::to_string(accumulation) + "\n");
  return test::run_command(mpirun(ranks) + " " + (test::binary_dir() / "bin" / "sdtrain").string() + " --config " +
                               config + " " + flags, output);
}

// Buckets: 2 ranks x 2 train as 1 rank x 4 (the same global batches); a checkpoint inside an epoch
// resumes at another world size with the same global batch and equals the straight run, and is
// refused with another global batch; the bucket report is logged, written as CSV and printed by
// --dry-run-data.
TEST(MpiTraining, BucketsTwoRanksEqualOneRankAndResumeWithTheSameGlobalBatch) {
  const fs::path dir = test::scratch_dir();
  const fs::path images = bucket_images(dir / "images");
  std::string output;
  ASSERT_EQ(train_buckets(dir / "two_ranks", images, 2, 2, 1, 6, &output), 0) << output;
  const fs::path straight = test::checkpoint_dir(dir / "two_ranks" / "out", 6) / "model.safetensors";
  ASSERT_EQ(train_buckets(dir / "one_rank", images, 1, 4, 1, 6, &output), 0) << output;
  expect_same_weights(straight, test::checkpoint_dir(dir / "one_rank" / "out", 6) / "model.safetensors");
  const std::string csv = read_text(dir / "two_ranks" / "out" / "buckets.csv");
  EXPECT_EQ(csv,
            "width,height,aspect,images,upscaled,downscaled,global_batches,padding,below_global_batch\n"
            "64,192,0.333333,1,1,0,1,3,1\n"
            "128,128,1.000000,6,2,2,2,2,0\n"
            "192,64,3.000000,3,1,1,1,1,1\n");
  EXPECT_NE(read_text(dir / "two_ranks" / "out" / "logs" / "rank-00000.log")
                .find("buckets: 3 in use, 10 images in 4 global batches of 4 per epoch"),
            std::string::npos);

  // Step 3 is 3 of the epoch's 4 global batches: inside the epoch.
  ASSERT_EQ(train_buckets(dir / "resumed", images, 2, 2, 1, 3, &output), 0) << output;
  fs::copy(dir / "resumed", dir / "refused", fs::copy_options::recursive);
  ASSERT_EQ(train_buckets(dir / "resumed", images, 1, 4, 1, 6, &output), 0) << output;
  expect_same_weights(test::checkpoint_dir(dir / "resumed" / "out", 6) / "model.safetensors", straight);
  EXPECT_EQ(train_buckets(dir / "refused", images, 1, 2, 2, 6, &output), 2) << output;
  EXPECT_NE(output.find("data.buckets: the checkpoint stopped inside epoch 0, whose batches were dealt for a global "
                        "batch of 2 ranks x data.batch_size 2 = 4; resume with the same product"),
            std::string::npos)
      << output;

  ASSERT_EQ(train_buckets(dir / "dry", images, 1, 2, 1, 6, &output, "--dry-run-data --world-size 2"), 0) << output;
  EXPECT_NE(output.find("data.train: 10 samples; global batch 2 ranks x 2 = 4"), std::string::npos) << output;
  EXPECT_NE(output.find("buckets: 3 in use, 10 images in 4 global batches of 4 per epoch"), std::string::npos)
      << output;
  EXPECT_EQ(read_text(dir / "dry" / "out" / "buckets.csv"), csv);
  EXPECT_FALSE(fs::exists(dir / "dry" / "out" / "checkpoints")) << "a dry run trains nothing";
}

TEST(MpiTraining, AFailingRankEndsTheJobWithTheReason) {
  const fs::path dir = test::scratch_dir();
  const std::string config =
      test::write_text(dir / "cfg.pbtxt",
                       "plugin_libraries: \"" + test::library("sdtrain_test_plugins").string() + "\"\n" +
                           "run { output_dir: \"out\" max_steps: 4 }\n"
                           "model { type: \"test_tiny_denoiser\" options { "
                           "[type.googleapis.com/sdtrain_test.TinyDenoiserOptions] { channels: 0 } } }\n"
                           "data { train { type: \"test_colors\" } batch_size: 2 }\n");
  std::string output;
  const int code = test::run_command(mpirun(2) + " " + (test::binary_dir() / "bin" / "sdtrain").string() +
                                         " --config " + config, &output);
  EXPECT_NE(code, 0) << output;
  EXPECT_NE(output.find("model.options.channels: must be > 0"), std::string::npos) << output;
}

}  // namespace
}  // namespace sdtrain

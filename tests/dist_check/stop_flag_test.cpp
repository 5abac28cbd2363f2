// The stop flag under mpirun with the real trainer (stop_flag_probe): SIGUSR1 raised on one rank
// only, at the end of step 3, stops every rank at the end of step 4 (one step later than a
// blocking allreduce would: the flag sent at step 3's end is read at step 4's), with one
// checkpoint there; on every rank the flag went by non-blocking allreduces only, each in flight
// across a step (the probe checks that from the collectives it recorded).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "tests/common/test_env.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

constexpr int kSignalStep = 3;

/// Runs the probe on `ranks` ranks with the signal on `signal_rank`; returns its output.
std::string run_probe(int ranks, int signal_rank, const fs::path& dir) {
  const std::string config = test::write_text(
      dir / "cfg.pbtxt",
      "plugin_libraries: \"" + test::library("sdtrain_test_plugins").string() + "\"\n" +
          "run { output_dir: \"out\" seed: 3 val_every_n_epochs: 0 max_steps: 100 checkpoint_every_n_steps: 0 }\n"
          "model { type: \"test_tiny_denoiser\" }\n"
          "data { train { type: \"test_colors\" } batch_size: 2 num_workers: 1 transforms { resolution: 16 } }\n"
          "optimizer { base_learning_rate: 0.01 }\n"
          "lr_schedule { type: \"constant\" }\n"
          "gradient_accumulation_steps: 1\n"
          "callbacks { type: \"probe_stop_signal\" }\n");
  std::string output;
  const int code = test::run_command(test::mpirun(ranks) + " " +
                                         (test::binary_dir() / "bin" / "stop_flag_probe").string() + " " + config +
                                         " " + std::to_string(signal_rank) + " " + std::to_string(kSignalStep),
                                     &output);
  EXPECT_EQ(code, 0) << output;
  return output;
}

void expect_every_rank_stopped_one_step_later(int ranks, const std::string& output, const fs::path& dir) {
  for (int rank = 0; rank < ranks; ++rank) {
    const std::string prefix = "rank " + std::to_string(rank) + ": ";
    EXPECT_NE(output.find(prefix + "stopped at step " + std::to_string(kSignalStep + 1) + "\n"), std::string::npos)
        << output;
    EXPECT_NE(output.find(prefix + "ok"), std::string::npos) << output;
  }
  std::vector<std::string> checkpoints;
  for (const auto& entry : fs::directory_iterator(dir / "out" / "checkpoints")) {
    if (fs::exists(entry.path() / "manifest.json")) checkpoints.push_back(entry.path().filename().string());
  }
  EXPECT_EQ(checkpoints, std::vector<std::string>{"step-00000004"});
}

TEST(StopFlagUnderMpirun, ASignalToOneOfTwoRanksStopsBothAtTheNextStep) {
  const fs::path dir = test::scratch_dir();
  expect_every_rank_stopped_one_step_later(2, run_probe(2, 1, dir), dir);
}

TEST(StopFlagUnderMpirun, ASignalToTheMiddleOfThreeRanksStopsAllAtTheNextStep) {
  const fs::path dir = test::scratch_dir();
  expect_every_rank_stopped_one_step_later(3, run_probe(3, 1, dir), dir);
}

}  // namespace
}  // namespace sdtrain

// Failure handling with real processes under `mpirun -np 2`: a stop signal to one rank, kill -9
// of a rank, a crash in the middle of a checkpoint write, a full disk on one rank while writing one, a corrupted checkpoint, a hung rank and
// a launcher whose ranks MPI does not see; the crash and the hang are injected through the fault
// points (SDTRAIN_FAULTS and --fault, docs/fault-injection.md). Each resumed run is compared
// bitwise with a run that never stopped (CPU, same world size).
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <regex>
#include <thread>

#include <nlohmann/json.hpp>

#include "framework/io/safetensors_reader.h"
#include "framework/util/file_util.h"
#include "tests/common/test_env.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string sdtrain_binary() { return (test::binary_dir() / "bin" / "sdtrain").string(); }

using test::mpirun;

/// The tiny test model on 2-sample batches; `run_fields` go into the run section.
std::string write_config(const fs::path& dir, const std::string& run_fields, const std::string& extra = "") {
  return test::write_text(dir / "cfg.pbtxt",
                          "plugin_libraries: \"" + test::library("sdtrain_test_plugins").string() + "\"\n" +
                              "run { output_dir: \"out\" seed: 3 val_every_n_epochs: 0 " + run_fields + " }\n"
                              "model { type: \"test_tiny_denoiser\" }\n"
                              "data { train { type: \"test_colors\" } batch_size: 2 num_workers: 1 "
                              "transforms { resolution: 16 } }\n"
                              "optimizer { base_learning_rate: 0.01 }\n"
                              "lr_schedule { type: \"constant\" }\n"
                              "gradient_accumulation_steps: 1\n" +
                              extra);
}

/// A job started in the background; its output goes to `log`.
struct Job {
  pid_t pid = -1;
  fs::path log;
};

Job start(const std::string& command, const fs::path& log) {
  Job job{-1, log};
  const std::string line = "exec " + command + " >" + log.string() + " 2>&1";
  job.pid = fork();
  if (job.pid == 0) {
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", line.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return job;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// Waits for the job's end (killing it after `timeout_s`); returns its exit code (-1: killed or
/// signalled) and its output.
int finish(Job& job, double timeout_s, std::string* output) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  int status = 0;
  while (waitpid(job.pid, &status, WNOHANG) == 0) {
    if (Clock::now() > deadline) {
      kill(-job.pid, SIGTERM);
      std::this_thread::sleep_for(std::chrono::seconds(3));
      kill(-job.pid, SIGKILL);
      waitpid(job.pid, &status, 0);
      *output = read_text(job.log) + "\n[test: killed after " + std::to_string(timeout_s) + " s]";
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  *output = read_text(job.log);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/// Runs a job to its end.
int run(const std::string& command, const fs::path& log, std::string* output, double timeout_s = 240) {
  Job job = start(command, log);
  return finish(job, timeout_s, output);
}

/// The pid of the sdtrain process of `rank` started with TEST_JOB_TAG=`tag` in its environment
/// (mpirun passes its environment on to the ranks it starts on this node); -1 if none yet.
pid_t find_rank(const std::string& tag, int rank) {
  const std::string want_tag = "SDTRAIN_TEST_JOB_TAG=" + tag;
  const std::string want_rank = "OMPI_COMM_WORLD_RANK=" + std::to_string(rank);
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    if (read_text(entry.path() / "comm").rfind("sdtrain", 0) != 0) continue;
    const std::string environ = read_text(entry.path() / "environ");
    bool tag_found = false, rank_found = false;
    for (std::size_t at = 0; at < environ.size();) {
      const std::size_t end = environ.find('\0', at);
      const std::string item = environ.substr(at, end == std::string::npos ? std::string::npos : end - at);
      tag_found |= item == want_tag;
      rank_found |= item == want_rank;
      if (end == std::string::npos) break;
      at = end + 1;
    }
    if (tag_found && rank_found) return static_cast<pid_t>(std::stol(name));
  }
  return -1;
}

/// Polls `condition` every 20 ms until it holds or `timeout_s` passes.
template <class Condition>
bool wait_for(Condition condition, double timeout_s) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  while (Clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

/// Complete checkpoints (with a manifest) under `out`, by step.
std::vector<int64_t> complete_checkpoints(const fs::path& out) {
  std::vector<int64_t> steps;
  const fs::path dir = out / "checkpoints";
  if (!fs::is_directory(dir)) return steps;
  static const std::regex pattern(R"(step-(\d{8}))");
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::smatch match;
    const std::string name = entry.path().filename().string();
    if (std::regex_match(name, match, pattern) && fs::exists(entry.path() / "manifest.json")) {
      steps.push_back(std::stoll(match[1]));
    }
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

fs::path checkpoint(const fs::path& out, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof(name), "step-%08lld", static_cast<long long>(step));
  return out / "checkpoints" / name;
}

/// Same tensors bit for bit, and the same loss curve.
void expect_identical_checkpoints(const fs::path& a, const fs::path& b) {
  SafetensorsReader left((a / "model.safetensors").string());
  SafetensorsReader right((b / "model.safetensors").string());
  ASSERT_EQ(left.names(), right.names());
  for (const auto& name : left.names()) {
    EXPECT_TRUE(torch::equal(left.tensor(name), right.tensor(name))) << name;
  }
  const auto losses = [](const fs::path& dir) {
    return nlohmann::json::parse(read_text(dir / "trainer_state.json"))
        .at("parts")
        .at("progress")
        .at("loss_history").get<std::vector<double>>();
  };
  EXPECT_EQ(losses(a), losses(b));
}

/// Trains `steps` steps on 2 ranks without interruption, checkpointing every `every`.
fs::path straight_run(const fs::path& dir, int64_t steps, int64_t every) {
  const std::string config = write_config(dir, "max_steps: " + std::to_string(steps) +
                                                   " checkpoint_every_n_steps: " + std::to_string(every));
  std::string output;
  EXPECT_EQ(run(mpirun(2) + " " + sdtrain_binary() + " --config " + config, dir / "log.txt", &output), 0) << output;
  return checkpoint(dir / "out", steps);
}

std::string unique_tag() {
  return std::to_string(getpid()) + "-" + std::to_string(Clock::now().time_since_epoch().count());
}

TEST(Resilience, StopSignalToOneRankStopsBothAtAStepBoundaryAndResumesExactly) {
  const fs::path dir = test::scratch_dir() / "stopped";
  const std::string config = write_config(dir, "max_steps: 1000000 checkpoint_every_n_steps: 0");
  const std::string tag = unique_tag();
  Job job = start(mpirun(2, {"SDTRAIN_TEST_JOB_TAG=" + tag}) + " " + sdtrain_binary() + " --config " + config,
                  dir / "log.txt");
  pid_t rank1 = -1;
  ASSERT_TRUE(wait_for([&] { return (rank1 = find_rank(tag, 1)) > 0; }, 60)) << read_text(job.log);
  // Mid-run: once rank 1 has trained a little (its log names the model after construction).
  wait_for([&] { return read_text(dir / "out" / "logs" / "rank-00001.log").find("data:") != std::string::npos; }, 60);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_EQ(kill(rank1, SIGUSR1), 0);
  std::string output;
  ASSERT_EQ(finish(job, 120, &output), 75) << output;

  // One checkpoint, at the step where both ranks stopped.
  const auto steps = complete_checkpoints(dir / "out");
  ASSERT_EQ(steps.size(), 1u) << output;
  const int64_t stop = steps[0];
  ASSERT_GT(stop, 0);
  const std::string stopped_at = "stopping at step " + std::to_string(stop) + " ";
  EXPECT_NE(read_text(dir / "out" / "logs" / "rank-00000.log").find(stopped_at), std::string::npos);
  EXPECT_NE(read_text(dir / "out" / "logs" / "rank-00001.log").find(stopped_at), std::string::npos);

  // Resume to 3 steps further; the result is the run that never stopped.
  const int64_t end = stop + 3;
  ASSERT_EQ(run(mpirun(2) + " " + sdtrain_binary() + " --config " + config + " --resume auto --set run.max_steps=" +
                    std::to_string(end),
                dir / "resume_log.txt", &output),
            0)
      << output;
  EXPECT_NE(output.find("resumed from " + checkpoint(dir / "out", stop).string()), std::string::npos) << output;
  expect_identical_checkpoints(checkpoint(dir / "out", end), straight_run(dir.parent_path() / "straight", end, 0));
}

TEST(Resilience, KillNineOfOneRankThenResumeAutoEqualsTheStraightRun) {
  const fs::path dir = test::scratch_dir() / "killed";
  const std::string config =
      write_config(dir, "max_steps: 1000000 checkpoint_every_n_steps: 3 keep_last_checkpoints: 2");
  const std::string tag = unique_tag();
  Job job = start(mpirun(2, {"SDTRAIN_TEST_JOB_TAG=" + tag}) + " " + sdtrain_binary() + " --config " + config,
                  dir / "log.txt");
  ASSERT_TRUE(wait_for([&] { return fs::exists(checkpoint(dir / "out", 3) / "manifest.json"); }, 120))
      << read_text(job.log);
  const pid_t rank1 = find_rank(tag, 1);
  ASSERT_GT(rank1, 0);
  ASSERT_EQ(kill(rank1, SIGKILL), 0);
  std::string output;
  EXPECT_NE(finish(job, 120, &output), 0) << output;  // the others do not carry on alone

  const auto steps = complete_checkpoints(dir / "out");
  ASSERT_FALSE(steps.empty());
  EXPECT_LE(steps.size(), 2u) << "keep_last_checkpoints: 2";
  const int64_t last = steps.back();
  const int64_t end = last + 3;
  ASSERT_EQ(run(mpirun(2) + " " + sdtrain_binary() + " --config " + config + " --resume auto --set run.max_steps=" +
                    std::to_string(end),
                dir / "resume_log.txt", &output),
            0)
      << output;
  EXPECT_NE(output.find("resumed from " + checkpoint(dir / "out", last).string()), std::string::npos) << output;
  expect_identical_checkpoints(checkpoint(dir / "out", end), straight_run(dir.parent_path() / "straight", end, 3));
}

// A rank that dies in the middle of a step (after a backward, before the update): the rule's exit
// status ends the job, the previous checkpoint is the last complete one, and the run resumes from
// it to the weights of the run that never stopped.
TEST(Resilience, ExitAfterABackwardResumesFromThePreviousCheckpoint) {
  const fs::path dir = test::scratch_dir() / "died_mid_step";
  const std::string config = write_config(dir, "max_steps: 4 checkpoint_every_n_steps: 2");
  std::string output;
  EXPECT_NE(run(mpirun(2) + " " + sdtrain_binary() + " --config " + config + " --fault step.after_backward:3@rank1=exit:42",
                dir / "log.txt", &output),
            0)
      << output;
  EXPECT_NE(output.find("sdtrain: rank 1: fault point step.after_backward:3 fired: exit:42"), std::string::npos)
      << output;
  EXPECT_EQ(complete_checkpoints(dir / "out"), std::vector<int64_t>{2});
  ASSERT_EQ(run(mpirun(2) + " " + sdtrain_binary() + " --config " + config + " --resume auto", dir / "resume_log.txt",
                &output),
            0)
      << output;
  EXPECT_NE(output.find("resumed from " + checkpoint(dir / "out", 2).string()), std::string::npos) << output;
  expect_identical_checkpoints(checkpoint(dir / "out", 4), straight_run(dir.parent_path() / "straight", 4, 2));
}

TEST(Resilience, CrashInTheMiddleOfACheckpointWriteKeepsThePreviousOne) {
  const fs::path dir = test::scratch_dir() / "crashed";
  const std::string config = write_config(dir, "max_steps: 6 checkpoint_every_n_steps: 2");
  std::string output;
  // Rank 0 dies (as kill -9 would) after writing step 4's model file, before the manifest.
  EXPECT_NE(run(mpirun(2, {"SDTRAIN_FAULTS=checkpoint.after_parts_write:4=crash"}) + " " + sdtrain_binary() +
                    " --config " + config,
                dir / "log.txt", &output),
            0)
      << output;
  EXPECT_NE(output.find("sdtrain: rank 0: fault point checkpoint.after_parts_write:4 fired: crash (exit status 137)"),
            std::string::npos)
      << output;
  // The interrupted write is only a hidden partial folder; step 2 is intact and complete.
  EXPECT_EQ(complete_checkpoints(dir / "out"), std::vector<int64_t>{2});
  EXPECT_TRUE(fs::exists(dir / "out" / "checkpoints" / ".step-00000004.partial" / "model.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "out" / "checkpoints" / ".step-00000004.partial" / "manifest.json"));

  ASSERT_EQ(run(mpirun(2) + " " + sdtrain_binary() + " --config " + config + " --resume auto", dir / "resume_log.txt",
                &output),
            0)
      << output;
  EXPECT_NE(output.find("resumed from " + checkpoint(dir / "out", 2).string()), std::string::npos) << output;
  EXPECT_FALSE(fs::exists(dir / "out" / "checkpoints" / ".step-00000004.partial"));
  expect_identical_checkpoints(checkpoint(dir / "out", 6), straight_run(dir.parent_path() / "straight", 6, 2));

  // A flipped byte in rank 1's optimizer shard (rank 1 wrote and hashed it, rank 0 listed it):
  // both ranks refuse to resume, naming the file.
  const fs::path optimizer = checkpoint(dir / "out", 6) / "optimizer-rank-00001-of-00002.safetensors";
  {
    std::fstream file(optimizer, std::ios::in | std::ios::out | std::ios::binary);
    file.seekg(static_cast<std::streamoff>(fs::file_size(optimizer) / 2));
    const char byte = static_cast<char>(file.get());
    file.seekp(static_cast<std::streamoff>(fs::file_size(optimizer) / 2));
    file.put(static_cast<char>(byte ^ 0x01));
  }
  EXPECT_NE(run(mpirun(2) + " " + sdtrain_binary() + " --config " + config + " --resume auto --set run.max_steps=8",
                dir / "corrupt_log.txt", &output),
            0)
      << output;
  EXPECT_NE(output.find(optimizer.string() + ": SHA-256"), std::string::npos) << output;
}

TEST(Resilience, AFullDiskOnOneRankEndsBothRanksAtOnceKeepingThePreviousCheckpoint) {
  const fs::path dir = test::scratch_dir() / "full_disk";
  const std::string config = write_config(dir, "max_steps: 6 checkpoint_every_n_steps: 2");
  std::string output;
  const auto started = Clock::now();
  // Rank 1's writes of step 4 fail as on a full disk; rank 0 writes its files and waits at the
  // fence, where it must learn of the failure instead of waiting into the 30-minute fence timeout.
  const int code = run(mpirun(2) + " " + sdtrain_binary() + " --config " + config +
                           " --fault checkpoint.write:4@rank1=enospc",
                       dir / "log.txt", &output, 120);
  const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
  EXPECT_EQ(code, 1) << output;
  EXPECT_LT(elapsed, 60) << output;
  EXPECT_NE(output.find("sdtrain: rank 1: fault point checkpoint.write:4 fired: enospc"), std::string::npos) << output;
  const fs::path partial = dir / "out" / "checkpoints" / ".step-00000004.partial";
  // The failed rank names its file and the system's reason; every rank names the failed one.
  EXPECT_NE(output.find("checkpoint step 4 was not written (writing the files failed on rank 1: " + partial.string() +
                        "/optimizer-rank-00001-of-00002.safetensors: write failed: No space left on device); "
                        "the checkpoints written before it are intact"),
            std::string::npos)
      << output;
  EXPECT_NE(output.find("checkpoint step 4 was not written (writing the files failed on rank 1; its log names the "
                        "cause)"),
            std::string::npos)
      << output;
  // Step 2 is intact, and the partial folder is gone (a full disk is not left fuller).
  EXPECT_EQ(complete_checkpoints(dir / "out"), std::vector<int64_t>{2});
  EXPECT_FALSE(fs::exists(partial));

  ASSERT_EQ(run(mpirun(2) + " " + sdtrain_binary() + " --config " + config + " --resume auto", dir / "resume_log.txt",
                &output),
            0)
      << output;
  EXPECT_NE(output.find("resumed from " + checkpoint(dir / "out", 2).string()), std::string::npos) << output;
  expect_identical_checkpoints(checkpoint(dir / "out", 6), straight_run(dir.parent_path() / "straight", 6, 2));
}

TEST(Resilience, AHungRankEndsTheJobWithinTheTimeoutNamingRankAndCollective) {
  const fs::path dir = test::scratch_dir();
  const std::string config = write_config(dir, "max_steps: 1000 checkpoint_every_n_steps: 0",
                                          "distributed { collective_timeout_s: 3 }\n");
  std::string output;
  const auto started = Clock::now();
  // Rank 1 stops for good before its 8th collective (a few optimizer steps in).
  const int code = run(mpirun(2) + " " + sdtrain_binary() + " --config " + config +
                           " --fault collective.before:8@rank1=stall",
                       dir / "log.txt", &output, 120);
  const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
  EXPECT_NE(code, 0) << output;
  EXPECT_NE(code, -1) << "the job had to be killed by the test: " << output;
  // Start-up (a few seconds) + the 3 s timeout + the 2 s grace for the report, with slack.
  EXPECT_LT(elapsed, 45) << output;
  EXPECT_NE(output.find("sdtrain: rank 1: fault point collective.before:8 fired: stall"), std::string::npos) << output;
  EXPECT_EQ(output.find("rank 0: fault point"), std::string::npos) << output;
  EXPECT_NE(output.find("sdtrain: rank 0: collective #8 ("), std::string::npos) << output;
  EXPECT_NE(output.find("did not complete within distributed.collective_timeout_s=3"), std::string::npos) << output;
  EXPECT_NE(output.find("rank(s) 1 never reached it (hung or dead)"), std::string::npos) << output;
  // The stalled rank cannot answer over MPI, but its flight recorder's thread published where it
  // stands: behind, at its 7th collective, completed.
  EXPECT_NE(output.find("flight recorder: rank 1 is behind at collective #7 ("), std::string::npos) << output;
  EXPECT_NE(output.find("nothing entered since); rank(s) 0 entered collective #8"), std::string::npos) << output;
  const fs::path records = dir / "out" / "flight_recorder";
  EXPECT_TRUE(fs::exists(records / "rank-00000.json") && fs::exists(records / "rank-00001.json"))
      << "an aborted job leaves its records";
}

TEST(Resilience, RanksTheLauncherStartedButMpiDoesNotSeeAreRefused) {
  // What `srun` without --mpi=pmix looks like to each process: a step of 2 tasks, an MPI world of 1.
  const fs::path dir = test::scratch_dir();
  const std::string config = write_config(dir, "max_steps: 1");
  std::string output;
  const int code = test::run_command("env -u OMPI_COMM_WORLD_RANK -u PMIX_RANK -u PMI_RANK SLURM_STEP_ID=0 "
                                     "SLURM_PROCID=1 SLURM_STEP_NUM_TASKS=2 SLURM_LOCALID=1 " +
                                         sdtrain_binary() + " --config " + config,
                                     &output);
  EXPECT_EQ(code, 1) << output;
  EXPECT_NE(output.find("the launcher (slurm) started 2 processes but MPI sees a world of 1"), std::string::npos)
      << output;
  EXPECT_NE(output.find("srun --mpi=pmix"), std::string::npos) << output;
  EXPECT_FALSE(fs::exists(dir / "out" / "checkpoints"));
}

}  // namespace
}  // namespace sdtrain

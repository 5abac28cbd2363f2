// Host waits per training step on a GPU: the trainer's whole loop (data loader, forward, backward,
// TrainStep::finish, callbacks, the stop-flag exchange) on the test denoiser, counted with c10's
// CUDA sync debug mode. Set to "warn", every synchronising CUDA call that c10 instruments (a
// blocking copy to or from the device, a stream or device synchronisation, item() of a device
// tensor) raises a warning; a handler on the training thread counts them (backward's warnings come
// back to the thread that called backward), and a callback reads the count at every step's end.
// A step may wait at most once: TrainStep's one read of the loss sum, the gradient norm and the
// fp16 overflow flag. Not counted: waits c10 does not instrument (an NCCL collective awaited by
// polling its event; at world size 1 there is none) and those of other threads (data workers).
// Skips without a GPU; in a CPU build of torch it only says so.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/common/test_env.h"

#ifdef SDTRAIN_WITH_CUDA
#include <google/protobuf/empty.pb.h>

#include <c10/cuda/CUDAFunctions.h>
#include <c10/util/Exception.h>
#include <torch/cuda.h>

#include "framework/dist/communicator_factory.h"
#include "framework/train/trainer.h"
#include "sdtrain/callback.h"
#include "sdtrain/plugin.h"
#endif

namespace sdtrain {
namespace {

#ifdef SDTRAIN_WITH_CUDA
namespace fs = std::filesystem;

/// Counts the sync debug mode's warnings; passes any other warning on.
class SyncCounter : public c10::WarningHandler {
 public:
  void process(const c10::Warning& warning) override {
    if (warning.msg().find("synchronizing CUDA operation") != std::string::npos) {
      ++count;
    } else {
      c10::WarningHandler::process(warning);
    }
  }
  int64_t count = 0;
};

/// Counts for its lifetime: `counter` handles this thread's warnings, the sync debug mode warns.
class CountingSyncs {
 public:
  explicit CountingSyncs(SyncCounter& counter) : handler_(&counter) {
    c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_WARN);
  }
  ~CountingSyncs() { c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED); }
  CountingSyncs(const CountingSyncs&) = delete;
  CountingSyncs& operator=(const CountingSyncs&) = delete;

 private:
  c10::WarningUtils::WarningHandlerGuard handler_;
};

/// The test's counter, and its count at each step's end.
SyncCounter g_counter;
std::vector<int64_t> g_count_at_step_end;

class RecordSyncCount : public Callback {
 public:
  void on_step_end(TrainerHandle&, const StepMetrics&) override {
    g_count_at_step_end.push_back(g_counter.count);
  }
};

SDTRAIN_REGISTER_CALLBACK("test_record_sync_count", google::protobuf::Empty,
                          "TEST ONLY: the CUDA synchronisations counted so far, at each step's end",
                          [](const google::protobuf::Empty&, const PluginContext&) {
                            return std::make_unique<RecordSyncCount>();
                          });
#endif

TEST(HostSyncs, AtMostOnePerTrainingStepOnAGpu) {
#ifndef SDTRAIN_WITH_CUDA
  GTEST_SKIP() << "a CPU build of torch: the test counts CUDA synchronisations";
#else
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  constexpr int kSteps = 6;
  const fs::path dir = test::scratch_dir();
  const std::string path = test::write_text(
      dir / "cfg.pbtxt",
      "plugin_libraries: \"" + test::library("sdtrain_test_plugins").string() + "\"\n" +
          "run { output_dir: \"out\" seed: 3 device: \"cuda\" val_every_n_epochs: 0 checkpoint_every_n_steps: 0 "
          "max_steps: " + std::to_string(kSteps) + " }\n"
          "model { type: \"test_tiny_denoiser\" }\n"
          // 16 micro-batches per epoch: every counted step lies inside the first epoch.
          "data { train { type: \"test_colors\" } batch_size: 2 num_workers: 1 transforms { resolution: 16 } }\n"
          "optimizer { base_learning_rate: 0.01 }\n"
          "lr_schedule { type: \"constant\" }\n"
          "gradient_accumulation_steps: 1\n"
          "callbacks { type: \"test_record_sync_count\" }\n");
  const LoadedConfig config = load_train_config(path, {});
  const torch::Device device(torch::kCUDA, 0);
  ProcessGroup& group = test::process_group();
  const std::unique_ptr<Communicator> communicator =
      make_communicator(CommunicatorBackend::kAuto, group.info(), device, 60.0);
  Trainer trainer(config, group.info(), *communicator, device);

  g_counter.count = 0;
  g_count_at_step_end.clear();
  {
    CountingSyncs counting(g_counter);
    trainer.fit();
  }

  ASSERT_EQ(g_count_at_step_end.size(), static_cast<std::size_t>(kSteps));
  // From one step's end to the next: one whole step. The first step is left out (it follows the
  // start-up: the weights' broadcast and hash, the first allocations).
  for (int step = 2; step <= kSteps; ++step) {
    const int64_t waits = g_count_at_step_end[step - 1] - g_count_at_step_end[step - 2];
    EXPECT_LE(waits, 1) << "step " << step << " made the host wait for the GPU " << waits << " times";
  }
  // The one read is a blocking device-to-host copy: seeing it shows that the counting works.
  EXPECT_GE(g_count_at_step_end.back() - g_count_at_step_end.front(), 1)
      << "no synchronisation counted at all: is the sync debug mode in effect?";
#endif
}

}  // namespace
}  // namespace sdtrain

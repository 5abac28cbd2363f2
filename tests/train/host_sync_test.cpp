// Host waits per training step on a GPU: the trainer's whole loop (data loader, forward, backward,
// TrainStep::finish, callbacks, the stop-flag exchange) on the test denoiser, counted with c10's
// CUDA sync debug mode. Set to "warn", every synchronising CUDA call that c10 instruments (a
// blocking copy to or from the device, a stream or device synchronisation, item() of a device
// tensor) raises a warning; a handler on the training thread counts them (backward's warnings come
// back to the thread that called backward), and a callback reads the count at every step's end.
// A step may wait at most once: TrainStep's one read of the loss sum, the gradient norm and the
// fp16 overflow flag. Not counted: waits c10 does not instrument (an NCCL collective awaited by
// polling its event; at world size 1 there is none) and those of other threads (data workers).
// The same for the stable_diffusion model's step (tiny networks), plain and from the encoder caches.
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

#ifdef SDTRAIN_WITH_CUDA
/// Trains `steps` steps of `model_and_data` (config text: model, data, extra fields) on the GPU,
/// counting synchronisations; returns the count at each step's end.
std::vector<int64_t> sync_counts_at_step_ends(const std::string& model_and_data, int steps) {
  const fs::path dir = test::scratch_dir();
  const std::string path = test::write_text(
      dir / "cfg.pbtxt",
      "plugin_libraries: \"" + test::library("sdtrain_test_plugins").string() + "\"\n" +
          "run { output_dir: \"out\" seed: 3 device: \"cuda\" val_every_n_epochs: 0 checkpoint_every_n_steps: 0 "
          "max_steps: " + std::to_string(steps) + " }\n" + model_and_data +
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
  return g_count_at_step_end;
}

/// Each step from `first` on (1-based; earlier ones follow the start-up: the weights' broadcast
/// and hash, the first allocations, cache misses) waits at most once.
void expect_at_most_one_wait_per_step(const std::vector<int64_t>& counts, int steps, int first) {
  ASSERT_EQ(counts.size(), static_cast<std::size_t>(steps));
  for (int step = first; step <= steps; ++step) {
    const int64_t waits = counts[step - 1] - counts[step - 2];
    EXPECT_LE(waits, 1) << "step " << step << " made the host wait for the GPU " << waits << " times";
  }
  // The one read is a blocking device-to-host copy: seeing it shows that the counting works.
  EXPECT_GE(counts.back() - counts[first - 2], 1)
      << "no synchronisation counted at all: is the sync debug mode in effect?";
}

/// A tiny stable_diffusion model with `extra` options, on a folder of four 16 px images.
std::string tiny_stable_diffusion(const std::string& extra) {
  const fs::path data = test::scratch_dir() / "data";
  test::write_captioned_image_folder(data, 4, {"a red square", "a blue circle"});
  return "model { type: \"stable_diffusion\" options { [type.googleapis.com/sdtrain.StableDiffusionOptions] {\n"
         "  unet { sample_size: 4 in_channels: 4 out_channels: 4 block_out_channels: [32, 64] layers_per_block: 1\n"
         "         cross_attention_dim: 32 attention_head_dim: 8 norm_num_groups: 8\n"
         "         down_block_types: [\"CrossAttnDownBlock2D\", \"DownBlock2D\"]\n"
         "         up_block_types: [\"UpBlock2D\", \"CrossAttnUpBlock2D\"] }\n"
         "  vae { block_out_channels: [32, 32, 32, 32] layers_per_block: 1 sample_size: 32 }\n"
         "  text_encoder { hidden_size: 32 intermediate_size: 37 num_hidden_layers: 2 num_attention_heads: 4 }\n" +
         extra + " } } }\n"
         "data { train { type: \"image_folder\" options { [type.googleapis.com/sdtrain.ImageFolderOptions] { root: \"" +
         data.string() + "\" } } } batch_size: 2 num_workers: 1 transforms { resolution: 32 random_flip: false } }\n";
}
#endif

TEST(HostSyncs, AtMostOnePerTrainingStepOnAGpu) {
#ifndef SDTRAIN_WITH_CUDA
  GTEST_SKIP() << "a CPU build of torch: the test counts CUDA synchronisations";
#else
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  // 16 micro-batches per epoch: every counted step lies inside the first epoch.
  const std::vector<int64_t> counts = sync_counts_at_step_ends(
      "model { type: \"test_tiny_denoiser\" }\n"
      "data { train { type: \"test_colors\" } batch_size: 2 num_workers: 1 transforms { resolution: 16 } }\n",
      6);
  expect_at_most_one_wait_per_step(counts, 6, 2);
#endif
}

// The stable_diffusion model's step: tokenizer ids, per-sample draws, the schedule's coefficients,
// v-prediction targets and min-SNR weights all reach the GPU without a host wait.
TEST(HostSyncs, StableDiffusionStepWaitsAtMostOnce) {
#ifndef SDTRAIN_WITH_CUDA
  GTEST_SKIP() << "a CPU build of torch: the test counts CUDA synchronisations";
#else
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const std::vector<int64_t> counts = sync_counts_at_step_ends(
      tiny_stable_diffusion("min_snr_gamma: 5 noise_scheduler { type: \"ddpm\" options { "
                            "[type.googleapis.com/sdtrain.DdpmSchedulerOptions] { schedule { prediction_type: "
                            "V_PREDICTION } } } }"),
      5);
  expect_at_most_one_wait_per_step(counts, 5, 2);
#endif
}

// With the encoder caches: once the first epoch (steps 1-2) has filled them, cached latents and
// text embeddings travel to the GPU in one non-blocking copy each.
TEST(HostSyncs, StableDiffusionStepFromTheCachesWaitsAtMostOnce) {
#ifndef SDTRAIN_WITH_CUDA
  GTEST_SKIP() << "a CPU build of torch: the test counts CUDA synchronisations";
#else
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const std::vector<int64_t> counts =
      sync_counts_at_step_ends(tiny_stable_diffusion("cache { latents: true text_embeddings: true }"), 6);
  expect_at_most_one_wait_per_step(counts, 6, 4);
#endif
}

}  // namespace
}  // namespace sdtrain

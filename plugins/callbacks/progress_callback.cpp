// "progress": steps/s, images/s, ETA, loss and LR as a bar on a terminal or periodic lines.
#include <cstdio>
#include <memory>

#include "framework/log/progress_bar.h"
#include "framework/registry/registry.h"
#include "plugins/callbacks/callbacks.pb.h"
#include "sdtrain/callback.h"
#include "sdtrain/log.h"

namespace sdtrain {
namespace {

class ProgressCallback : public Callback {
 public:
  explicit ProgressCallback(const ProgressOptions& options) : options_(options) {}

  void on_fit_start(TrainerHandle& trainer) override {
    bar_ = std::make_unique<ProgressBar>(trainer.progress().total_steps, "train", trainer.rank() == 0,
                                         options_.plain_interval_s());
  }

  void on_step_end(TrainerHandle& trainer, const StepMetrics& metrics) override {
    const int64_t step = trainer.progress().step;
    // The GPU's peak memory where there is one: what decides the batch size a card can take.
    char memory[48] = "";
    if (metrics.peak_device_memory_bytes >= 0) {
      std::snprintf(memory, sizeof(memory), " peak mem %.2f GiB",
                    static_cast<double>(metrics.peak_device_memory_bytes) / (1024.0 * 1024.0 * 1024.0));
    }
    char status[200];
    std::snprintf(status, sizeof(status), "ep %lld loss %.4f lr %.3g %.1f img/s%s",
                  static_cast<long long>(trainer.progress().epoch), metrics.loss, metrics.learning_rate,
                  metrics.images_per_s, memory);
    if (bar_) bar_->update(step, status);
    if (options_.log_metrics() && metrics.log_due && !stderr_is_terminal()) {
      char line[256];
      std::snprintf(line, sizeof(line), "step %lld epoch %lld loss %.6f lr %.6g grad_norm %.4g %.2f img/s%s%s",
                    static_cast<long long>(step), static_cast<long long>(trainer.progress().epoch), metrics.loss,
                    metrics.learning_rate, metrics.grad_norm, metrics.images_per_s, memory,
                    metrics.skipped ? " (skipped)" : "");
      SDTRAIN_LOG(INFO) << line;
    }
  }

  void on_fit_end(TrainerHandle&) override {
    if (bar_) bar_->finish();
  }

 private:
  ProgressOptions options_;
  std::unique_ptr<ProgressBar> bar_;
};

SDTRAIN_REGISTER_CALLBACK("progress", ProgressOptions, "progress bar / periodic lines: loss, LR, img/s, ETA",
                          [](const ProgressOptions& options, const PluginContext&) {
                            return std::make_unique<ProgressCallback>(options);
                          });

}  // namespace
}  // namespace sdtrain

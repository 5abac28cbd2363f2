// "tensorboard": scalars and validation grids in TensorBoard event files. Options:
// TensorBoardOptions in proto/callbacks.proto; the file format in tensorboard/event_file_writer.h.
#include <filesystem>
#include <memory>

#include "framework/registry/registry.h"
#include "plugins/callbacks/callbacks.pb.h"
#include "plugins/callbacks/tensorboard/event_file_writer.h"
#include "sdtrain/callback.h"
#include "sdtrain/errors.h"
#include "sdtrain/log.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

class TensorBoardCallback : public Callback, public ImageSink {
 public:
  explicit TensorBoardCallback(const TensorBoardOptions& options) : options_(options) {}

  ~TensorBoardCallback() override {
    if (sinks_) sinks_->remove(this);
  }

  void on_fit_start(TrainerHandle& trainer) override {
    if (trainer.rank() != 0) return;
    fs::path directory(options_.subdir());
    if (directory.is_relative()) directory = fs::path(trainer.output_dir()) / directory;
    writer_ = std::make_unique<EventFileWriter>(directory.lexically_normal().string());
    // A resumed run replays the steps after its checkpoint (step s: s steps done, logged as s):
    // TensorBoard hides the interrupted run's events from step s + 1 on.
    if (trainer.progress().step > 0) writer_->add_session_start(trainer.progress().step + 1);
    if (options_.log_images()) {
      sinks_ = &trainer.image_sinks();
      sinks_->add(this);
    }
    SDTRAIN_LOG(INFO) << "tensorboard: writing " << writer_->path();
  }

  void on_step_end(TrainerHandle& trainer, const StepMetrics& metrics) override {
    if (!writer_) return;
    const int64_t step = trainer.progress().step;
    if (!metrics.log_due) return;
    writer_->add_scalar("train/loss", metrics.loss, step);
    writer_->add_scalar("train/learning_rate", metrics.learning_rate, step);
    writer_->add_scalar("train/images_per_s", metrics.images_per_s, step);
    writer_->add_scalar("train/grad_norm", metrics.grad_norm, step);
    if (metrics.peak_device_memory_bytes >= 0) {
      writer_->add_scalar("train/peak_device_memory_gib",
                          static_cast<double>(metrics.peak_device_memory_bytes) / (1024.0 * 1024.0 * 1024.0), step);
    }
  }

  /// Evaluation metrics under their own names ("val/loss", "val/loss_ema") at the step reached.
  void on_validation_end(TrainerHandle& trainer) override {
    if (!writer_) return;
    for (const auto& [name, value] : trainer.metrics()) writer_->add_scalar(name, value, trainer.progress().step);
  }

  void add_image(const std::string& tag, const Image& image, std::int64_t step) override {
    if (writer_) writer_->add_image(tag, image, step);
  }

  void on_fit_end(TrainerHandle&) override {
    if (sinks_) sinks_->remove(this);
    sinks_ = nullptr;
    if (writer_) writer_->sync();
    writer_.reset();
  }

 private:
  TensorBoardOptions options_;
  std::unique_ptr<EventFileWriter> writer_;
  ImageSinks* sinks_ = nullptr;
};

SDTRAIN_REGISTER_CALLBACK("tensorboard", TensorBoardOptions,
                          "TensorBoard event files: loss, LR, img/s, grad norm, validation loss and grids",
                          [](const TensorBoardOptions& options, const PluginContext&) {
                            if (options.subdir().empty()) throw ConfigError("subdir: must not be empty");
                            return std::make_unique<TensorBoardCallback>(options);
                          });

}  // namespace
}  // namespace sdtrain

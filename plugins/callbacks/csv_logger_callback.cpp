// "csv_logger": metrics per logged step in a CSV file that any tool reads.
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <memory>

#include "framework/plugin/callback.h"
#include "framework/registry/registry.h"
#include "framework/util/errors.h"
#include "proto/callbacks.pb.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

class CsvLoggerCallback : public Callback {
 public:
  explicit CsvLoggerCallback(const CsvLoggerOptions& options) : options_(options) {}

  void on_fit_start(TrainerHandle& trainer) override {
    if (trainer.rank() != 0) return;
    const fs::path path = fs::path(trainer.output_dir()) / options_.filename();
    const bool fresh = !fs::exists(path) || fs::file_size(path) == 0;
    out_.open(path, std::ios::app);
    if (!out_) throw std::runtime_error("csv_logger: cannot open " + path.string() + " for writing");
    if (fresh) out_ << "step,epoch,loss,learning_rate,grad_norm,images_per_s,step_time_s,skipped\n";
  }

  void on_step_end(TrainerHandle& trainer, const StepMetrics& metrics) override {
    if (!out_.is_open()) return;
    const int64_t step = trainer.progress().step;
    if (step % trainer.config().run().log_every_n_steps() != 0) return;
    out_ << step << ',' << trainer.progress().epoch << ',' << std::setprecision(9) << metrics.loss << ','
         << metrics.learning_rate << ',' << metrics.grad_norm << ',' << metrics.images_per_s << ','
         << metrics.step_time_s << ',' << (metrics.skipped ? 1 : 0) << '\n';
    out_.flush();
  }

 private:
  CsvLoggerOptions options_;
  std::ofstream out_;
};

SDTRAIN_REGISTER_CALLBACK("csv_logger", CsvLoggerOptions, "metrics per logged step in <output_dir>/metrics.csv",
                          [](const CsvLoggerOptions& options, const PluginContext&) {
                            if (options.filename().empty()) throw ConfigError("filename: must not be empty");
                            return std::make_unique<CsvLoggerCallback>(options);
                          });

}  // namespace
}  // namespace sdtrain

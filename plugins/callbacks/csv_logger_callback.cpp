// "csv_logger": metrics per logged step in a CSV file that any tool reads, and the evaluation
// metrics of every validation (val/loss, val/loss_ema) in a second one, "validation_<filename>",
// in long format (step,epoch,metric,value): the set of metrics depends on the config, and long
// rows stay valid when a resumed run logs other metrics.
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <memory>

#include "framework/registry/registry.h"
#include "plugins/callbacks/callbacks.pb.h"
#include "sdtrain/callback.h"
#include "sdtrain/errors.h"

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
    validation_path_ = fs::path(trainer.output_dir()) / ("validation_" + options_.filename());
  }

  void on_validation_end(TrainerHandle& trainer) override {
    if (!out_.is_open() || trainer.metrics().empty()) return;
    const bool fresh = !fs::exists(validation_path_) || fs::file_size(validation_path_) == 0;
    std::ofstream out(validation_path_, std::ios::app);
    if (!out) throw std::runtime_error("csv_logger: cannot open " + validation_path_.string() + " for writing");
    if (fresh) out << "step,epoch,metric,value\n";
    // The epoch that just ended (progress().epoch already counts it).
    const int64_t epoch = trainer.progress().epoch - 1;
    for (const auto& [name, value] : trainer.metrics()) {
      out << trainer.progress().step << ',' << epoch << ',' << name << ',' << std::setprecision(17) << value << '\n';
    }
  }

  void on_step_end(TrainerHandle& trainer, const StepMetrics& metrics) override {
    if (!out_.is_open()) return;
    const int64_t step = trainer.progress().step;
    if (!metrics.log_due) return;
    out_ << step << ',' << trainer.progress().epoch << ',' << std::setprecision(9) << metrics.loss << ','
         << metrics.learning_rate << ',' << metrics.grad_norm << ',' << metrics.images_per_s << ','
         << metrics.step_time_s << ',' << (metrics.skipped ? 1 : 0) << '\n';
    out_.flush();
  }

 private:
  CsvLoggerOptions options_;
  std::ofstream out_;
  fs::path validation_path_;
};

SDTRAIN_REGISTER_CALLBACK("csv_logger", CsvLoggerOptions, "metrics per logged step in <output_dir>/metrics.csv, validation metrics in validation_metrics.csv",
                          [](const CsvLoggerOptions& options, const PluginContext&) {
                            if (options.filename().empty()) throw ConfigError("filename: must not be empty");
                            return std::make_unique<CsvLoggerCallback>(options);
                          });

}  // namespace
}  // namespace sdtrain

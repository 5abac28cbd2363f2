// "image_logger": validation sample grids (the LDM ImageLogger). Options: ImageLoggerOptions in
// proto/callbacks.proto.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "framework/data/image_codec.h"
#include "framework/data/image_grid.h"
#include "framework/io/atomic_file.h"
#include "framework/registry/registry.h"
#include "plugins/callbacks/callbacks.pb.h"
#include "plugins/schedulers/noise/schedulers.pb.h"
#include "sdtrain/callback.h"
#include "sdtrain/errors.h"
#include "sdtrain/log.h"
#include "sdtrain/model.h"
#include "sdtrain/noise_scheduler.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

class ImageLoggerCallback : public Callback {
 public:
  explicit ImageLoggerCallback(const ImageLoggerOptions& options) : options_(options) {
    if (options_.sampler() == "ddim") {
      auto ddim = std::make_shared<DdimSchedulerOptions>();
      ddim->set_eta(options_.eta());
      sampler_options_ = std::move(ddim);
    }
  }

  /// The grid's prompts (each distinct validation prompt images_per_prompt times) and image size.
  void on_fit_start(TrainerHandle& trainer) override {
    std::vector<std::string> distinct;
    for (const std::string& caption : trainer.validation_prompts()) {
      if (std::find(distinct.begin(), distinct.end(), caption) == distinct.end()) distinct.push_back(caption);
    }
    if (distinct.empty()) {
      throw ConfigError("image_logger: needs prompts to sample: data.validation (a text_only dataset) is "
                        "missing or empty");
    }
    prompts_.clear();
    for (const std::string& prompt : distinct) {
      for (int copy = 0; copy < options_.images_per_prompt(); ++copy) prompts_.push_back(prompt);
    }
    height_ = options_.height() > 0 ? options_.height() : trainer.resolution();
    width_ = options_.width() > 0 ? options_.width() : trainer.resolution();
  }

  void on_validation_end(TrainerHandle& trainer) override {
    const TrainProgress& progress = trainer.progress();
    // The trainer validates after counting the finished epoch; the file names the epoch that was
    // just trained, as Lightning's current_epoch during its validation loop.
    const int64_t epoch = progress.batch_in_epoch == 0 && progress.epoch > 0 ? progress.epoch - 1 : progress.epoch;
    draw_grid(trainer, epoch, 0);
  }

  /// The step cadence (every_n_steps, log_first_step), with the validation weights swapped in.
  void on_step_end(TrainerHandle& trainer, const StepMetrics& metrics) override {
    const int64_t every = options_.every_n_steps();
    const int64_t step = trainer.progress().step;
    if (every <= 0 || metrics.skipped) return;
    if (step % every != 0 && !(options_.log_first_step() && step == 1)) return;
    trainer.with_validation_weights(
        [&] { draw_grid(trainer, trainer.progress().epoch, trainer.progress().batch_in_epoch); });
  }

 private:
  /// Samples the grid (every rank its share), writes it and publishes it (rank 0).
  void draw_grid(TrainerHandle& trainer, int64_t epoch, int64_t batch) {
    const int count = static_cast<int>(prompts_.size());
    const int rank = trainer.rank();
    const int world = trainer.world_size();
    // Image i is drawn by rank i % world; the images meet on rank 0 through one allreduce of a
    // zero-filled buffer in which every rank wrote only its own images. Every rank makes the
    // same collective call whatever it sampled, so no rank waits alone on a collective.
    torch::Tensor gathered = torch::zeros({count, height_, width_, 3}, torch::kUInt8);
    for (int i = rank; i < count; i += world) {
      SampleRequest request = base_request();
      request.prompts = {prompts_[i]};
      request.seed = options_.seed() + static_cast<std::uint64_t>(i);
      std::vector<Image> images = trainer.model().sample(request);
      if (images.size() != 1 || images[0].width != width_ || images[0].height != height_ || images[0].channels != 3) {
        throw std::runtime_error("image_logger: the model's sample() returned an image of unexpected size for '" +
                                 prompts_[i] + "'");
      }
      std::memcpy(gathered[i].data_ptr(), images[0].pixels.data(), images[0].pixels.size());
    }
    if (world > 1) trainer.allreduce_sum(gathered);
    if (rank != 0) return;

    std::vector<Image> images(count);
    for (int i = 0; i < count; ++i) {
      images[i].width = width_;
      images[i].height = height_;
      images[i].channels = 3;
      const auto* data = gathered[i].data_ptr<std::uint8_t>();
      images[i].pixels.assign(data, data + images[i].width * images[i].height * 3);
    }
    const Image grid = make_image_grid(images, options_.columns());
    write_grid(trainer, grid, epoch, batch);
    trainer.image_sinks().publish(options_.tag(), grid, trainer.progress().step);
  }

  SampleRequest base_request() const {
    SampleRequest request;
    request.negative_prompt = options_.negative_prompt();
    request.height = height_;
    request.width = width_;
    request.steps = options_.steps();
    request.guidance_scale = options_.guidance_scale();
    request.guidance_rescale = options_.guidance_rescale();
    request.sampler = options_.sampler();
    request.sampler_options = sampler_options_;
    return request;
  }

  void write_grid(TrainerHandle& trainer, const Image& grid, int64_t epoch, int64_t batch) const {
    const TrainProgress& progress = trainer.progress();
    char name[96];
    std::snprintf(name, sizeof(name), "samples_gs-%06lld_e-%06lld_b-%06lld", static_cast<long long>(progress.step),
                  static_cast<long long>(epoch), static_cast<long long>(batch));
    fs::path directory(options_.subdir());
    if (directory.is_relative()) directory = fs::path(trainer.output_dir()) / directory;
    fs::create_directories(directory);

    std::vector<std::pair<std::string, std::string>> text;
    for (std::size_t i = 0; i < prompts_.size(); ++i) text.emplace_back("prompt_" + std::to_string(i), prompts_[i]);
    std::ostringstream parameters;
    parameters << "sampler: " << options_.sampler() << ", steps: " << options_.steps() << ", eta: " << options_.eta()
               << ", guidance_scale: " << options_.guidance_scale()
               << ", guidance_rescale: " << options_.guidance_rescale() << ", negative_prompt: \""
               << options_.negative_prompt() << "\", seed: " << options_.seed() << " + image index, size: " << width_
               << "x" << height_ << ", step: " << progress.step << ", epoch: " << epoch;
    text.emplace_back("parameters", parameters.str());
    const fs::path png = directory / (std::string(name) + ".png");
    write_png_file(png.string(), grid, text);

    std::string listing;
    for (const std::string& prompt : prompts_) listing += prompt + "\n";
    write_file_atomic((directory / (std::string(name) + ".txt")).string(), listing);
    SDTRAIN_LOG(INFO) << "image_logger: wrote " << png.string();
  }

  ImageLoggerOptions options_;
  std::shared_ptr<const DdimSchedulerOptions> sampler_options_;  ///< eta for ddim; null for other samplers
  std::vector<std::string> prompts_;  ///< grid order: distinct prompts, each images_per_prompt times
  int height_ = 0;
  int width_ = 0;
};

std::unique_ptr<Callback> make_image_logger(const ImageLoggerOptions& options, const PluginContext&) {
  if (options.steps() < 1) throw ConfigError("steps: must be >= 1, got " + std::to_string(options.steps()));
  if (options.images_per_prompt() < 1) {
    throw ConfigError("images_per_prompt: must be >= 1, got " + std::to_string(options.images_per_prompt()));
  }
  if (options.columns() < 1) throw ConfigError("columns: must be >= 1, got " + std::to_string(options.columns()));
  if (!(options.guidance_rescale() >= 0 && options.guidance_rescale() <= 1)) {
    throw ConfigError("guidance_rescale: must be in [0, 1], got " + std::to_string(options.guidance_rescale()));
  }
  if (options.subdir().empty()) throw ConfigError("subdir: must not be empty");
  if (options.every_n_steps() < 0) {
    throw ConfigError("every_n_steps: must be >= 0 (0: only at validation), got " +
                      std::to_string(options.every_n_steps()));
  }
  if (options.height() < 0 || options.height() % 8 != 0 || options.width() < 0 || options.width() % 8 != 0) {
    throw ConfigError("height/width: must be 0 or positive multiples of 8, got " + std::to_string(options.height()) +
                      "x" + std::to_string(options.width()));
  }
  PluginSpec sampler;
  sampler.set_type(options.sampler());
  Registry<NoiseScheduler>::instance().check(sampler, "sampler");
  return std::make_unique<ImageLoggerCallback>(options);
}

SDTRAIN_REGISTER_CALLBACK("image_logger", ImageLoggerOptions,
                          "validation sample grids (EMA weights, fixed seeds) as PNGs, also to TensorBoard",
                          make_image_logger);

}  // namespace
}  // namespace sdtrain

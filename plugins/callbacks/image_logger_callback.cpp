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

#include "framework/config/config_loader.h"
#include "framework/data/image_codec.h"
#include "framework/data/image_grid.h"
#include "framework/dist/communicator.h"
#include "framework/io/atomic_file.h"
#include "framework/log/logger.h"
#include "framework/plugin/callback.h"
#include "framework/plugin/dataset.h"
#include "framework/plugin/model.h"
#include "framework/plugin/scheduler.h"
#include "framework/registry/registry.h"
#include "framework/util/errors.h"
#include "proto/callbacks.pb.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

class ImageLoggerCallback : public Callback {
 public:
  ImageLoggerCallback(const ImageLoggerOptions& options, std::vector<std::string> prompts, int height, int width)
      : options_(options), prompts_(std::move(prompts)), height_(height), width_(width) {}

  void on_validation_end(TrainerHandle& trainer) override {
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
    if (world > 1) trainer.communicator().allreduce_sum(gathered);
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
    write_grid(trainer, grid);
    trainer.image_sinks().publish(options_.tag(), grid, trainer.progress().step);
  }

 private:
  SampleRequest base_request() const {
    SampleRequest request;
    request.negative_prompt = options_.negative_prompt();
    request.height = height_;
    request.width = width_;
    request.steps = options_.steps();
    request.guidance_scale = options_.guidance_scale();
    request.sampler = options_.sampler();
    request.eta = options_.eta();
    return request;
  }

  void write_grid(TrainerHandle& trainer, const Image& grid) const {
    const TrainProgress& progress = trainer.progress();
    // The trainer validates after counting the finished epoch; the file names the epoch that was
    // just trained, as Lightning's current_epoch during its validation loop.
    const int64_t epoch = progress.batch_in_epoch == 0 && progress.epoch > 0 ? progress.epoch - 1 : progress.epoch;
    char name[96];
    std::snprintf(name, sizeof(name), "samples_gs-%06lld_e-%06lld_b-%06d", static_cast<long long>(progress.step),
                  static_cast<long long>(epoch), 0);
    fs::path directory(options_.subdir());
    if (directory.is_relative()) directory = fs::path(trainer.output_dir()) / directory;
    fs::create_directories(directory);

    std::vector<std::pair<std::string, std::string>> text;
    for (std::size_t i = 0; i < prompts_.size(); ++i) text.emplace_back("prompt_" + std::to_string(i), prompts_[i]);
    std::ostringstream parameters;
    parameters << "sampler: " << options_.sampler() << ", steps: " << options_.steps() << ", eta: " << options_.eta()
               << ", guidance_scale: " << options_.guidance_scale() << ", negative_prompt: \""
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
  std::vector<std::string> prompts_;  ///< grid order: distinct prompts, each images_per_prompt times
  int height_;
  int width_;
};

std::unique_ptr<Callback> make_image_logger(const ImageLoggerOptions& options, const PluginContext& context) {
  if (options.steps() < 1) throw ConfigError("steps: must be >= 1, got " + std::to_string(options.steps()));
  if (options.images_per_prompt() < 1) {
    throw ConfigError("images_per_prompt: must be >= 1, got " + std::to_string(options.images_per_prompt()));
  }
  if (options.columns() < 1) throw ConfigError("columns: must be >= 1, got " + std::to_string(options.columns()));
  if (options.subdir().empty()) throw ConfigError("subdir: must not be empty");
  if (options.height() < 0 || options.height() % 8 != 0 || options.width() < 0 || options.width() % 8 != 0) {
    throw ConfigError("height/width: must be 0 or positive multiples of 8, got " + std::to_string(options.height()) +
                      "x" + std::to_string(options.width()));
  }
  PluginSpec sampler;
  sampler.set_type(options.sampler());
  Registry<NoiseScheduler>::instance().check(sampler, "sampler");
  if (!context.config || !context.config->data().has_validation()) {
    throw ConfigError("needs data.validation (a text_only dataset with the prompts to sample)");
  }
  const TrainConfig& config = *context.config;
  std::unique_ptr<Dataset> validation =
      Registry<Dataset>::instance().create(config.data().validation(), context, "data.validation");
  std::vector<std::string> distinct;
  for (std::size_t i = 0; i < validation->size(); ++i) {
    const std::string caption = validation->get(i).caption;
    if (std::find(distinct.begin(), distinct.end(), caption) == distinct.end()) distinct.push_back(caption);
  }
  if (distinct.empty()) throw ConfigError("data.validation has no prompts");
  std::vector<std::string> prompts;
  for (const std::string& prompt : distinct) {
    for (int copy = 0; copy < options.images_per_prompt(); ++copy) prompts.push_back(prompt);
  }
  const int resolution = config.data().transforms().resolution();
  const int height = options.height() > 0 ? options.height() : resolution;
  const int width = options.width() > 0 ? options.width() : resolution;
  if (config.run().val_every_n_epochs() <= 0) {
    SDTRAIN_LOG(WARNING) << "image_logger: run.val_every_n_epochs is 0, so no validation grids will be drawn";
  }
  return std::make_unique<ImageLoggerCallback>(options, std::move(prompts), height, width);
}

SDTRAIN_REGISTER_CALLBACK("image_logger", ImageLoggerOptions,
                          "validation sample grids (EMA weights, fixed seeds) as PNGs, also to TensorBoard",
                          make_image_logger);

}  // namespace
}  // namespace sdtrain

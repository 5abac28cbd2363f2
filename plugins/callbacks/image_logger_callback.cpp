// "image_logger": validation sample grids and the train split (the LDM ImageLogger). Options:
// ImageLoggerOptions in plugins/callbacks/callbacks.proto.
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
    // A request without prompts checks the sampler under the model's training schedule now (e.g.
    // pndm refuses zero terminal SNR), instead of at the first grid, maybe hours into the run.
    SampleRequest check = base_request();
    check.height = height_;
    check.width = width_;
    trainer.model().sample(check);
  }

  void on_validation_end(TrainerHandle& trainer) override {
    const TrainProgress& progress = trainer.progress();
    // The trainer validates after counting the finished epoch; the file names the epoch that was
    // just trained, as Lightning's current_epoch during its validation loop.
    const int64_t epoch = progress.batch_in_epoch == 0 && progress.epoch > 0 ? progress.epoch - 1 : progress.epoch;
    draw_validation_grid(trainer, epoch, 0);
  }

  /// The step cadence (every_n_steps, log_first_step), with the validation weights swapped in:
  /// the train split (train_images) and the validation prompts' grid.
  void on_step_end(TrainerHandle& trainer, const StepMetrics& metrics) override {
    const int64_t every = options_.every_n_steps();
    const int64_t step = trainer.progress().step;
    if (every <= 0 || metrics.skipped) return;
    if (step % every != 0 && !(options_.log_first_step() && step == 1)) return;
    trainer.with_validation_weights([&] {
      const int64_t epoch = trainer.progress().epoch;
      const int64_t batch = trainer.progress().batch_in_epoch;
      if (options_.train_images() > 0) draw_train_split(trainer, epoch, batch);
      draw_validation_grid(trainer, epoch, batch);
    });
  }

 private:
  /// One image to draw: a prompt, its seed, the guidance and the size.
  struct Draw {
    std::string prompt;
    std::uint64_t seed = 0;
    double guidance_scale = 1;
    int height = 0;
    int width = 0;
  };

  void draw_validation_grid(TrainerHandle& trainer, int64_t epoch, int64_t batch) {
    std::vector<Draw> draws;
    for (std::size_t i = 0; i < prompts_.size(); ++i) {
      draws.push_back({prompts_[i], options_.seed() + i, options_.guidance_scale(), height_, width_});
    }
    const std::vector<Image> images = draw_on_all_ranks(trainer, draws);
    if (trainer.rank() != 0) return;
    const Image grid = make_image_grid(images, options_.columns());
    write_grid(trainer, options_.subdir(), "samples", grid, prompts_, sampling_parameters(trainer, epoch, width_, height_),
               epoch, batch);
    trainer.image_sinks().publish(options_.tag(), grid, trainer.progress().step);
  }

  /// The reference's train split: rank 0's batch previewed (inputs, reconstructions) and its
  /// captions sampled by every rank, the grids written by rank 0.
  void draw_train_split(TrainerHandle& trainer, int64_t epoch, int64_t batch_index) {
    BatchPreview preview;
    std::vector<std::string> captions;
    if (trainer.rank() == 0) {
      const Batch* batch = trainer.last_batch();
      if (batch == nullptr) throw std::runtime_error("image_logger: the trainer offers no batch at on_step_end");
      preview = trainer.model().preview_batch(*batch, options_.train_images());
      captions.assign(batch->captions.begin(), batch->captions.begin() + static_cast<std::ptrdiff_t>(preview.inputs.size()));
      if (preview.height <= 0 || preview.width <= 0) preview.height = preview.width = trainer.resolution();
    }
    int height = preview.height;
    int width = preview.width;
    share_from_rank0(trainer, captions, height, width);

    const bool guided = options_.guidance_scale() > 1;
    std::vector<Draw> draws;
    for (std::size_t i = 0; i < captions.size(); ++i) draws.push_back({captions[i], options_.seed() + i, 1.0, height, width});
    if (guided) {
      for (std::size_t i = 0; i < captions.size(); ++i) {
        draws.push_back({captions[i], options_.seed() + i, options_.guidance_scale(), height, width});
      }
    }
    std::vector<Image> samples = draw_on_all_ranks(trainer, draws);
    if (trainer.rank() != 0) return;

    const auto count = static_cast<std::ptrdiff_t>(captions.size());
    const std::string parameters = sampling_parameters(trainer, epoch, width, height);
    const auto write = [&](const std::string& kind, const std::vector<Image>& images, const std::string& about) {
      const Image grid = make_image_grid(images, options_.columns());
      write_grid(trainer, options_.train_subdir(), kind, grid, captions, about, epoch, batch_index);
      trainer.image_sinks().publish("train/" + kind, grid, trainer.progress().step);
    };
    const bool inputs_complete = std::none_of(preview.inputs.begin(), preview.inputs.end(),
                                              [](const Image& image) { return image.empty(); });
    if (inputs_complete) {
      write("inputs", preview.inputs, "the training batch's first images, as trained on");
    } else if (!warned_missing_inputs_) {
      warned_missing_inputs_ = true;
      SDTRAIN_LOG(INFO) << "image_logger: the train split's inputs grid is left out when a previewed sample came "
                           "from the latent cache (its image was not decoded); the reconstruction grid shows it";
    }
    if (!preview.reconstructions.empty()) {
      write("reconstruction", preview.reconstructions, "the autoencoder's decoding of each image's posterior mean");
    }
    write("samples", std::vector<Image>(samples.begin(), samples.begin() + count),
          "samples for the batch's captions without guidance; " + parameters);
    if (guided) {
      char kind[64];
      std::snprintf(kind, sizeof(kind), "samples_cfg_scale_%.2f", options_.guidance_scale());
      write(kind, std::vector<Image>(samples.begin() + count, samples.end()), parameters);
    }
  }

  /// Every rank gets rank 0's captions and image size: one allreduce of a header (count, height,
  /// width, caption lengths; train_images bounds the count, so every rank knows its size) and one
  /// of the caption bytes, to which the other ranks add zeros.
  void share_from_rank0(TrainerHandle& trainer, std::vector<std::string>& captions, int& height, int& width) const {
    if (trainer.world_size() == 1) return;
    torch::Tensor header = torch::zeros({3 + options_.train_images()}, torch::kInt64);
    if (trainer.rank() == 0) {
      auto* values = header.data_ptr<int64_t>();
      values[0] = static_cast<int64_t>(captions.size());
      values[1] = height;
      values[2] = width;
      for (std::size_t i = 0; i < captions.size(); ++i) values[3 + i] = static_cast<int64_t>(captions[i].size());
    }
    trainer.allreduce_sum(header);
    const auto* values = header.data_ptr<int64_t>();
    int64_t total = 0;
    for (int64_t i = 0; i < values[0]; ++i) total += values[3 + i];
    torch::Tensor bytes = torch::zeros({std::max<int64_t>(total, 1)}, torch::kUInt8);
    if (trainer.rank() == 0) {
      auto* out = bytes.data_ptr<std::uint8_t>();
      for (const std::string& caption : captions) out = std::copy(caption.begin(), caption.end(), out);
    }
    trainer.allreduce_sum(bytes);
    height = static_cast<int>(values[1]);
    width = static_cast<int>(values[2]);
    captions.clear();
    const char* in = reinterpret_cast<const char*>(bytes.data_ptr<std::uint8_t>());
    for (int64_t i = 0; i < values[0]; ++i) {
      captions.emplace_back(in, static_cast<std::size_t>(values[3 + i]));
      in += values[3 + i];
    }
  }

  /// Draws `draws` (image i by rank i % world) and gathers them on rank 0 through one allreduce
  /// of a zero-filled buffer in which every rank wrote only its own images. Every rank makes the
  /// same collective call whatever it sampled, so no rank waits alone on a collective. Returns
  /// the images on rank 0, nothing elsewhere. All draws have one size.
  std::vector<Image> draw_on_all_ranks(TrainerHandle& trainer, const std::vector<Draw>& draws) const {
    const int count = static_cast<int>(draws.size());
    if (count == 0) return {};
    const int rank = trainer.rank();
    const int world = trainer.world_size();
    const int height = draws.front().height;
    const int width = draws.front().width;
    torch::Tensor gathered = torch::zeros({count, height, width, 3}, torch::kUInt8);
    for (int i = rank; i < count; i += world) {
      SampleRequest request = base_request();
      request.prompts = {draws[i].prompt};
      request.seed = draws[i].seed;
      request.guidance_scale = draws[i].guidance_scale;
      request.height = height;
      request.width = width;
      std::vector<Image> images = trainer.model().sample(request);
      if (images.size() != 1 || images[0].width != width || images[0].height != height || images[0].channels != 3) {
        throw std::runtime_error("image_logger: the model's sample() returned an image of unexpected size for '" +
                                 draws[i].prompt + "'");
      }
      std::memcpy(gathered[i].data_ptr(), images[0].pixels.data(), images[0].pixels.size());
    }
    if (world > 1) trainer.allreduce_sum(gathered);
    if (rank != 0) return {};

    std::vector<Image> images(count);
    for (int i = 0; i < count; ++i) {
      images[i].width = width;
      images[i].height = height;
      images[i].channels = 3;
      const auto* data = gathered[i].data_ptr<std::uint8_t>();
      images[i].pixels.assign(data, data + static_cast<std::size_t>(width) * height * 3);
    }
    return images;
  }

  SampleRequest base_request() const {
    SampleRequest request;
    request.negative_prompt = options_.negative_prompt();
    request.steps = options_.steps();
    request.guidance_rescale = options_.guidance_rescale();
    request.sampler = options_.sampler();
    request.sampler_options = sampler_options_;
    return request;
  }

  std::string sampling_parameters(const TrainerHandle& trainer, int64_t epoch, int width, int height) const {
    std::ostringstream parameters;
    parameters << "sampler: " << options_.sampler() << ", steps: " << options_.steps() << ", eta: " << options_.eta()
               << ", guidance_scale: " << options_.guidance_scale()
               << ", guidance_rescale: " << options_.guidance_rescale() << ", negative_prompt: \""
               << options_.negative_prompt() << "\", seed: " << options_.seed() << " + image index, size: " << width
               << "x" << height << ", step: " << trainer.progress().step << ", epoch: " << epoch;
    return parameters.str();
  }

  /// <subdir>/<kind>_gs-<step>_e-<epoch>_b-<batch>.png with the captions (prompt_<i>) and
  /// `parameters` in its text chunks, and the captions one per line in a sidecar .txt.
  void write_grid(TrainerHandle& trainer, const std::string& subdir, const std::string& kind, const Image& grid,
                  const std::vector<std::string>& captions, const std::string& parameters, int64_t epoch,
                  int64_t batch) const {
    char name[160];
    std::snprintf(name, sizeof(name), "%s_gs-%06lld_e-%06lld_b-%06lld", kind.c_str(),
                  static_cast<long long>(trainer.progress().step), static_cast<long long>(epoch),
                  static_cast<long long>(batch));
    fs::path directory(subdir);
    if (directory.is_relative()) directory = fs::path(trainer.output_dir()) / directory;
    fs::create_directories(directory);

    std::vector<std::pair<std::string, std::string>> text;
    for (std::size_t i = 0; i < captions.size(); ++i) text.emplace_back("prompt_" + std::to_string(i), captions[i]);
    text.emplace_back("parameters", parameters);
    const fs::path png = directory / (std::string(name) + ".png");
    write_png_file(png.string(), grid, text);

    std::string listing;
    for (const std::string& caption : captions) listing += caption + "\n";
    write_file_atomic((directory / (std::string(name) + ".txt")).string(), listing);
    SDTRAIN_LOG(INFO) << "image_logger: wrote " << png.string();
  }

  ImageLoggerOptions options_;
  std::shared_ptr<const DdimSchedulerOptions> sampler_options_;  ///< eta for ddim; null for other samplers
  std::vector<std::string> prompts_;  ///< grid order: distinct prompts, each images_per_prompt times
  int height_ = 0;
  int width_ = 0;
  bool warned_missing_inputs_ = false;
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
  if (options.train_subdir().empty()) throw ConfigError("train_subdir: must not be empty");
  if (options.train_images() < 0) {
    throw ConfigError("train_images: must be >= 0 (0: no train split), got " + std::to_string(options.train_images()));
  }
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
                          "validation sample grids and the train split (EMA weights, fixed seeds) as PNGs, also to TensorBoard",
                          make_image_logger);

}  // namespace
}  // namespace sdtrain

#pragma once
/// Image sinks: how a callback that makes images (the image logger's validation grids) hands them
/// to callbacks that record images (TensorBoard), without either knowing the other.
///
/// A recording callback adds itself to TrainerHandle::image_sinks() in on_fit_start and removes
/// itself in its destructor or on_fit_end; a producing callback calls publish(). Callbacks are
/// all started (on_fit_start) before any step or validation runs, so the order of callbacks in
/// the config does not matter. Rank-local: sinks see only what their own rank publishes (the
/// image logger publishes on rank 0, where TensorBoard writes).
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "sdtrain/image.h"

namespace sdtrain {

/// Something that records images, e.g. into a TensorBoard event file.
class ImageSink {
 public:
  virtual ~ImageSink() = default;
  /// Records `image` under `tag` (e.g. "validation/samples") at optimizer step `step`.
  virtual void add_image(const std::string& tag, const Image& image, std::int64_t step) = 0;
};

/// The sinks of one training run. Not thread-safe: used from the training thread only.
class ImageSinks {
 public:
  /// Registers `sink` (not owned; must stay alive until removed). Adding twice has no effect.
  void add(ImageSink* sink) {
    if (std::find(sinks_.begin(), sinks_.end(), sink) == sinks_.end()) sinks_.push_back(sink);
  }
  void remove(ImageSink* sink) { sinks_.erase(std::remove(sinks_.begin(), sinks_.end(), sink), sinks_.end()); }
  /// Hands `image` to every registered sink, in registration order.
  void publish(const std::string& tag, const Image& image, std::int64_t step) {
    for (ImageSink* sink : sinks_) sink->add_image(tag, image, step);
  }
  bool empty() const { return sinks_.empty(); }

 private:
  std::vector<ImageSink*> sinks_;
};

}  // namespace sdtrain

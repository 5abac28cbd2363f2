#include "framework/data/sample_scan.h"

#include <algorithm>
#include <thread>

#include "framework/data/image_codec.h"
#include "sdtrain/errors.h"

namespace sdtrain {

std::pair<int, int> sample_image_size(Sample& sample, const std::string& name, int64_t max_pixels) {
  if (!sample.image.empty()) return {sample.image.width, sample.image.height};
  if (sample.encoded.empty()) throw DataError(name + ": the sample has no image");
  try {
    return read_image_size(sample.encoded, name);
  } catch (const DataError&) {
    // A header this reader refuses is left to the decoder, whose errors name what is wrong.
    sample.image = decode_image(sample.encoded, name, max_pixels);
    return {sample.image.width, sample.image.height};
  }
}

namespace {

void scan_one(const Dataset& dataset, int64_t index, const ScanOptions& options, SampleScan& out) {
  out.scanned = true;
  try {
    Sample sample = dataset.get(static_cast<std::size_t>(index));
    out.key = sample.key;
    out.empty_caption = sample.caption.empty();
    const std::string& name = sample.location.empty() ? sample.key : sample.location;
    const auto [width, height] = sample_image_size(sample, name, options.max_pixels);
    if (width <= 0 || height <= 0) {
      throw DataError(name + ": image of size " + std::to_string(width) + "x" + std::to_string(height));
    }
    if (options.max_pixels > 0 && static_cast<int64_t>(width) * height > options.max_pixels) {
      throw DataError(name + ": image of " + std::to_string(width) + "x" + std::to_string(height) +
                      " pixels exceeds data.bad_data.max_image_pixels");
    }
    if (options.decode && sample.image.empty()) {
      const Image image = decode_image(sample.encoded, name, options.max_pixels);
      if (image.width != width || image.height != height) {
        throw DataError(name + ": decoded size " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                        " differs from the header's " + std::to_string(width) + "x" + std::to_string(height));
      }
    }
    out.width = width;
    out.height = height;
  } catch (const DataError& error) {
    if (out.key.empty()) out.key = error.sample_key();
    if (out.key.empty()) out.key = "#" + std::to_string(index);
    out.width = out.height = 0;
    out.error = error.what();
  }
}

}  // namespace

std::vector<SampleScan> scan_samples(const Dataset& dataset, const ScanOptions& options) {
  const auto size = static_cast<int64_t>(dataset.size());
  const int64_t world = std::max(1, options.world_size);
  std::vector<SampleScan> scans(static_cast<std::size_t>(size));
  const int workers = std::max(1, options.threads);
  auto work = [&](int worker) {
    for (int64_t i = options.rank + worker * world; i < size; i += workers * world) scan_one(dataset, i, options, scans[i]);
  };
  if (options.threads <= 0) {
    work(0);
  } else {
    std::vector<std::thread> pool;
    for (int worker = 0; worker < workers; ++worker) pool.emplace_back(work, worker);
    for (auto& thread : pool) thread.join();
  }
  return scans;
}

}  // namespace sdtrain

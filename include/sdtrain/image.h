#pragma once
/// A decoded 8-bit image in host memory: the currency between codecs, datasets and transforms.
#include <cstdint>
#include <vector>

namespace sdtrain {

/// Interleaved, row-major, 8 bits per channel. `pixels.size() == width * height * channels`.
/// Decoders in sdtrain always produce RGB (channels == 3).
struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;
  std::vector<std::uint8_t> pixels;

  bool empty() const { return pixels.empty(); }
};

}  // namespace sdtrain

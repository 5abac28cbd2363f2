#pragma once
// Images written for tests (image folders of chosen sizes).
#include <cstdint>
#include <string>

#include "framework/data/image_codec.h"

namespace sdtrain::testing {

/// Writes a width x height RGB PNG whose colours depend on `variant`, left-right asymmetric (so
/// flips matter) and different for every variant.
inline void write_test_png(const std::string& path, int width, int height, int variant) {
  Image image;
  image.width = width;
  image.height = height;
  image.channels = 3;
  image.pixels.resize(static_cast<std::size_t>(width) * height * 3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      std::uint8_t* p = &image.pixels[(static_cast<std::size_t>(y) * width + x) * 3];
      p[0] = static_cast<std::uint8_t>((x * 16 + variant * 70) % 256);
      p[1] = static_cast<std::uint8_t>((y * 13 + variant * 40) % 256);
      p[2] = static_cast<std::uint8_t>((x * y + variant * 90) % 256);
    }
  }
  write_png_file(path, image);
}

}  // namespace sdtrain::testing

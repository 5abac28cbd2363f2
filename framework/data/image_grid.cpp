#include "framework/data/image_grid.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace sdtrain {

Image make_image_grid(const std::vector<Image>& images, int columns, int padding, std::uint8_t pad_value) {
  if (images.empty()) throw std::invalid_argument("make_image_grid: no images");
  if (columns < 1) throw std::invalid_argument("make_image_grid: columns must be >= 1, got " + std::to_string(columns));
  if (padding < 0) throw std::invalid_argument("make_image_grid: padding must be >= 0, got " + std::to_string(padding));
  const Image& first = images.front();
  for (std::size_t i = 0; i < images.size(); ++i) {
    const Image& image = images[i];
    if (image.width != first.width || image.height != first.height || image.channels != first.channels ||
        image.pixels.size() != static_cast<std::size_t>(image.width) * image.height * image.channels) {
      throw std::invalid_argument("make_image_grid: image " + std::to_string(i) + " is " + std::to_string(image.width) +
                                  "x" + std::to_string(image.height) + "x" + std::to_string(image.channels) +
                                  ", expected " + std::to_string(first.width) + "x" + std::to_string(first.height) +
                                  "x" + std::to_string(first.channels));
    }
  }
  const int count = static_cast<int>(images.size());
  const int cols = std::min(columns, count);
  const int rows = (count + cols - 1) / cols;
  const int cell_w = first.width + padding;
  const int cell_h = first.height + padding;
  Image grid;
  grid.width = cols * cell_w + padding;
  grid.height = rows * cell_h + padding;
  grid.channels = first.channels;
  grid.pixels.assign(static_cast<std::size_t>(grid.width) * grid.height * grid.channels, pad_value);
  const std::size_t row_bytes = static_cast<std::size_t>(first.width) * first.channels;
  for (int k = 0; k < count; ++k) {
    const int x0 = (k % cols) * cell_w + padding;
    const int y0 = (k / cols) * cell_h + padding;
    for (int y = 0; y < first.height; ++y) {
      std::memcpy(&grid.pixels[(static_cast<std::size_t>(y0 + y) * grid.width + x0) * grid.channels],
                  &images[k].pixels[y * row_bytes], row_bytes);
    }
  }
  return grid;
}

}  // namespace sdtrain

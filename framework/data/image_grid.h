#pragma once
/// Tiles images into one grid image, as torchvision.utils.make_grid (the LDM image logger's
/// grids) lays them out.
#include <vector>

#include "framework/data/image.h"

namespace sdtrain {

/// Row-major grid of `images` (all the same size and channel count, at least one) with
/// min(columns, n) columns and ceil(n / columns) rows. Every image is surrounded by `padding`
/// pixels of value `pad_value` (shared between neighbours, as make_grid: the grid is
/// columns * (W + padding) + padding wide). Cells past the last image stay `pad_value`.
/// Throws std::invalid_argument for an empty list, columns < 1, padding < 0 or mismatched sizes.
Image make_image_grid(const std::vector<Image>& images, int columns, int padding = 2, std::uint8_t pad_value = 0);

}  // namespace sdtrain

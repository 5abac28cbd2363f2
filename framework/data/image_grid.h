#pragma once
/// Image grids as torchvision.utils.make_grid lays them out (what the CompVis txt2img script and
/// Lightning's ImageLogger save): `columns` images per row, `padding` pixels of `pad_value`
/// around and between the cells.
#include <cstdint>
#include <vector>

#include "sdtrain/image.h"

namespace sdtrain {

/// All images must have the same size and channel count (std::invalid_argument otherwise, or when
/// `images` is empty or columns < 1). Rows = ceil(n / columns); a short last row leaves its
/// remaining cells filled with pad_value; columns larger than n shrink to n.
Image make_image_grid(const std::vector<Image>& images, int columns, int padding = 2, std::uint8_t pad_value = 0);

}  // namespace sdtrain

#pragma once
/// The demo data set of sddemodata: one coloured shape on a plain background per image.
#include <cstdint>
#include <string>

#include "sdtrain/image.h"

namespace sdtrain {

/// One generated example.
struct DemoShape {
  Image image;          ///< size x size RGB
  std::string caption;  ///< e.g. "a red circle on a white background"
};

/// Example `index` of the set drawn with `seed`: a function of (seed, index, size) only, so the
/// first N images are the same whatever the count. Shapes (circle, square, triangle) are
/// antialiased (4x4 supersampling), fully inside the image, 40-70% of its side across.
DemoShape make_demo_shape(std::uint64_t seed, std::uint64_t index, int size);

}  // namespace sdtrain

#pragma once
/// 8-bit pixel values to the float range the models train on, vectorised: what torchvision's
/// ToTensor() (v / 255 in float32) followed by the recipe's x * 2 - 1 computes, bit for bit.
#include <cstddef>
#include <cstdint>

namespace sdtrain {

/// dst[i] = float(src[i]) / 255 * 2 - 1 for i < count, in float32 with IEEE rounding at each
/// step (the same values as torchvision). `src` and `dst` must not overlap.
void bytes_to_signed_unit(const std::uint8_t* src, std::size_t count, float* dst);

}  // namespace sdtrain

#pragma once
/// Internal to the resampling (image_resize.cpp, resize_kernels_avx2.cpp): PIL's fixed-point
/// coefficient tables, the planar output both passes write, and the AVX2 kernels. Not a public
/// interface.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace sdtrain {
namespace resize_detail {

/// PIL: PRECISION_BITS = 32 - 8 - 2.
constexpr int kPrecisionBits = 22;

/// PIL's precompute_coeffs + normalize_coeffs_8bpc for a range of outputs.
struct Coefficients {
  int ksize = 0;
  std::vector<int> start;             ///< first input index per output
  std::vector<int> taps;              ///< number of inputs per output
  std::vector<std::int32_t> weights;  ///< ksize per output, fixed point
};

/// PIL's clip8: a fixed-point sum (rounding included) to 8 bits.
inline std::uint8_t clip8(std::int32_t value) {
  const std::int32_t v = value >> kPrecisionBits;
  return static_cast<std::uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

/// Where the horizontal pass writes: `planes` holds C planes of `plane_size` bytes, rows of
/// `width` bytes; output pixel x of a row lands in column x, or width - 1 - x when mirrored.
struct PlanarTarget {
  std::uint8_t* planes = nullptr;
  std::size_t plane_size = 0;
  int width = 0;
  bool mirror = false;

  std::uint8_t* at(int channel, int row, int x) const {
    return planes + plane_size * channel + static_cast<std::size_t>(row) * width + (mirror ? width - 1 - x : x);
  }
};

/// Whether the AVX2 kernels run: an x86-64 CPU with AVX2, unless ATEN_CPU_CAPABILITY=default
/// (PyTorch's switch to its scalar kernels) is set. False on other CPUs.
bool avx2_kernels_enabled();

/// The horizontal pass of an RGB image (`rows` rows from `src`, `stride` bytes apart, each of
/// `row_bytes` readable bytes) with AVX2, for output pixels [0, n) where n, returned, is a
/// multiple of 4 chosen so that no load leaves a row; the caller does the rest with PIL's loop.
/// Bit-identical to PIL. Requires avx2_kernels_enabled().
int horizontal_rgb_avx2(const std::uint8_t* src, std::size_t stride, std::size_t row_bytes, int rows,
                        const Coefficients& c, const PlanarTarget& out);

/// The vertical pass over values [0, n) of each row with AVX2, n = 16 * floor(row_values / 16)
/// returned: output row i mixes rows (c.start[i] - row_offset) ... of `src`. Bit-identical to
/// PIL. Requires avx2_kernels_enabled().
int vertical_avx2(const std::uint8_t* src, std::size_t src_stride, int row_offset, const Coefficients& c,
                  int row_values, std::uint8_t* dst);

}  // namespace resize_detail
}  // namespace sdtrain

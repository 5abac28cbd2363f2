#include "framework/data/resize_kernels.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SDTRAIN_RESIZE_AVX2 1
#include <immintrin.h>
#endif

// The AVX2 kernels of the resampling. Each function carries target("avx2") (the baseline x86-64
// build has no AVX2, and the CPU is asked at run time), so nothing here runs on a CPU without it.
// The compiler neither vectorises 3-channel pixels with per-pixel coefficients nor keeps the
// vertical sums in registers; these do, with the same integer arithmetic as PIL's loops.

namespace sdtrain {
namespace resize_detail {

#ifdef SDTRAIN_RESIZE_AVX2
namespace {

// PIL's 22-bit coefficients do not fit the 16-bit multiplies of pmaddwd, so both kernels split
// each as w = hi * 2^kSplitBits + lo with 0 <= lo < 2^kSplitBits: sum(p * w) = 2^kSplitBits *
// sum(p * hi) + sum(p * lo), the same integer as PIL's (exact even where the partial products
// wrap, since the total fits 32 bits).
constexpr int kSplitBits = 11;

std::int16_t split_hi(std::int32_t w) { return static_cast<std::int16_t>(w >> kSplitBits); }  // floor
std::int16_t split_lo(std::int32_t w) { return static_cast<std::int16_t>(w & ((1 << kSplitBits) - 1)); }

/// Two 16-bit lanes (a low, b high) in one 32-bit value, for a broadcast pair of weights.
std::int32_t two_halves(std::int16_t a, std::int16_t b) {
  const auto high = static_cast<std::uint32_t>(static_cast<std::uint16_t>(b)) << 16;
  return static_cast<std::int32_t>(static_cast<std::uint16_t>(a) | high);
}

/// PIL's rounded, shifted sum from the two halves' sums (before clipping to 8 bits).
__attribute__((target("avx2"))) __m256i shifted_sum(__m256i hi, __m256i lo) {
  const __m256i rounding = _mm256_set1_epi32(1 << (kPrecisionBits - 1));
  const __m256i sum = _mm256_add_epi32(_mm256_add_epi32(_mm256_slli_epi32(hi, kSplitBits), lo), rounding);
  return _mm256_srai_epi32(sum, kPrecisionBits);
}

/// The horizontal pass of 3-channel images with AVX2, bit-identical to PIL's loop, with the split
/// coefficients. One 16-byte load covers 4 taps of an RGB pixel; shuffles pair taps (t, t + 1)
/// per channel as 16-bit lanes, so one pmaddwd per pair yields [R, G, B, 0] partial sums. Two
/// output pixels go through the two 128-bit halves at once.
class Rgb16BitKernel {
 public:
  /// Builds the split coefficients of the pixels whose 16-byte loads stay inside a row of
  /// `row_bytes` bytes: a prefix [0, simd_end()) of the outputs (starts only grow along a row),
  /// cut to a multiple of 4.
  Rgb16BitKernel(const Coefficients& c, std::size_t row_bytes) {
    int max_taps = 0;
    for (int taps : c.taps) max_taps = std::max(max_taps, taps);
    groups_ = (max_taps + 3) / 4;
    const int width = static_cast<int>(c.start.size());
    while (simd_end_ < width &&
           static_cast<std::size_t>(c.start[simd_end_]) * 3 + 12 * (groups_ - 1) + 16 <= row_bytes) {
      ++simd_end_;
    }
    simd_end_ -= simd_end_ % 4;  // whole groups of 4 pixels (run() stores 4 at a time)
    // Per pixel and group of 4 taps: hi(t0, t1), hi(t2, t3), lo(t0, t1), lo(t2, t3), each as
    // 8 int16 lanes [wa, wb, wa, wb, wa, wb, 0, 0] matching the shuffled pixels.
    weights_.assign(static_cast<std::size_t>(simd_end_) * groups_ * 32, 0);
    for (int x = 0; x < simd_end_; ++x) {
      const std::int32_t* k = &c.weights[static_cast<std::size_t>(x) * c.ksize];
      for (int g = 0; g < groups_; ++g) {
        std::int16_t* v = &weights_[(static_cast<std::size_t>(x) * groups_ + g) * 32];
        for (int j = 0; j < 4; ++j) {
          const int t = 4 * g + j;
          const std::int32_t w = t < c.taps[x] ? k[t] : 0;
          const std::int16_t hi = split_hi(w);
          const std::int16_t lo = split_lo(w);
          const int pair = j / 2;
          for (int ch = 0; ch < 3; ++ch) {
            v[pair * 8 + ch * 2 + j % 2] = hi;
            v[16 + pair * 8 + ch * 2 + j % 2] = lo;
          }
        }
      }
    }
  }

  int simd_end() const { return simd_end_; }

  __attribute__((target("avx2"))) void run(const std::uint8_t* src, std::size_t src_stride, int rows,
                                           const Coefficients& c, const PlanarTarget& out) const {
    // Bytes [R G B 0] of pixels 0 and 2 in the low half, 1 and 3 in the high half (after the
    // 64-bit permute) -> [R0 R1 R2 R3 | G0 .. | B0 .. | -], or pixels 3 2 1 0 when mirrored.
    const __m128i to_planes = out.mirror
                                  ? _mm_setr_epi8(12, 4, 8, 0, 13, 5, 9, 1, 14, 6, 10, 2, -1, -1, -1, -1)
                                  : _mm_setr_epi8(0, 8, 4, 12, 1, 9, 5, 13, 2, 10, 6, 14, -1, -1, -1, -1);
    const int width = out.width;
    for (int y = 0; y < rows; ++y) {
      const std::uint8_t* in = src + src_stride * y;
      std::uint8_t* r = out.planes + static_cast<std::size_t>(y) * width;  // row starts of the planes
      std::uint8_t* g = r + out.plane_size;
      std::uint8_t* b = g + out.plane_size;
      for (int x = 0; x < simd_end_; x += 4) {
        const __m256i first = pixel_pair(in, c, x);
        const __m256i second = pixel_pair(in, c, x + 2);
        const __m256i words = _mm256_packus_epi32(first, second);  // clamps below 0
        const __m256i bytes = _mm256_packus_epi16(words, words);   // clamps above 255
        const __m128i four =
            _mm_shuffle_epi8(_mm256_castsi256_si128(_mm256_permute4x64_epi64(bytes, 0x08)), to_planes);
        const std::size_t at = out.mirror ? width - 4 - x : x;
        store4(r + at, _mm_cvtsi128_si32(four));
        store4(g + at, _mm_extract_epi32(four, 1));
        store4(b + at, _mm_extract_epi32(four, 2));
      }
    }
  }

 private:
  /// The shifted sums [R G B 0] of output pixels x (low half) and x + 1 (high half).
  __attribute__((target("avx2"))) __m256i pixel_pair(const std::uint8_t* in, const Coefficients& c, int x) const {
    const __m128i pair01 = _mm_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1);
    const __m128i pair23 = _mm_setr_epi8(6, -1, 9, -1, 7, -1, 10, -1, 8, -1, 11, -1, -1, -1, -1, -1);
    const __m256i shuffle01 = _mm256_setr_m128i(pair01, pair01);
    const __m256i shuffle23 = _mm256_setr_m128i(pair23, pair23);
    const std::uint8_t* pa = in + static_cast<std::size_t>(c.start[x]) * 3;
    const std::uint8_t* pb = in + static_cast<std::size_t>(c.start[x + 1]) * 3;
    const std::int16_t* wa = &weights_[static_cast<std::size_t>(x) * groups_ * 32];
    const std::int16_t* wb = wa + static_cast<std::size_t>(groups_) * 32;
    __m256i hi = _mm256_setzero_si256();
    __m256i lo = _mm256_setzero_si256();
    for (int g = 0; g < groups_; ++g) {
      const __m256i pixels = load_pair(pa + 12 * g, pb + 12 * g);
      const __m256i p01 = _mm256_shuffle_epi8(pixels, shuffle01);
      const __m256i p23 = _mm256_shuffle_epi8(pixels, shuffle23);
      const std::int16_t* a = wa + 32 * g;
      const std::int16_t* b = wb + 32 * g;
      hi = _mm256_add_epi32(hi, _mm256_madd_epi16(p01, load_pair(a, b)));
      hi = _mm256_add_epi32(hi, _mm256_madd_epi16(p23, load_pair(a + 8, b + 8)));
      lo = _mm256_add_epi32(lo, _mm256_madd_epi16(p01, load_pair(a + 16, b + 16)));
      lo = _mm256_add_epi32(lo, _mm256_madd_epi16(p23, load_pair(a + 24, b + 24)));
    }
    return shifted_sum(hi, lo);
  }

  __attribute__((target("avx2"))) static __m256i load_pair(const void* a, const void* b) {
    return _mm256_setr_m128i(_mm_loadu_si128(static_cast<const __m128i*>(a)),
                             _mm_loadu_si128(static_cast<const __m128i*>(b)));
  }

  static void store4(std::uint8_t* to, int value) { std::memcpy(to, &value, 4); }

  int groups_ = 0;
  int simd_end_ = 0;
  std::vector<std::int16_t> weights_;
};
}  // namespace

bool avx2_kernels_enabled() {
  static const bool enabled = [] {
    const char* capability = std::getenv("ATEN_CPU_CAPABILITY");
    if (capability != nullptr && std::string(capability) == "default") return false;
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return enabled;
}

int horizontal_rgb_avx2(const std::uint8_t* src, std::size_t stride, std::size_t row_bytes, int rows,
                        const Coefficients& c, const PlanarTarget& out) {
  const Rgb16BitKernel kernel(c, row_bytes);
  kernel.run(src, stride, rows, c, out);
  return kernel.simd_end();
}

// 16 values at a time in registers, with the split coefficients; rows are paired so that one
// pmaddwd does two taps of 8 values.
__attribute__((target("avx2"))) int vertical_avx2(const std::uint8_t* src, std::size_t src_stride,
                                                  int row_offset, const Coefficients& c, int row_values,
                                                  std::uint8_t* dst) {
  const int end = row_values / 16 * 16;
  const int height = static_cast<int>(c.start.size());
  std::vector<std::int32_t> hi_pairs;  // (w_t, w_t+1) as two 16-bit halves, broadcast in the loop
  std::vector<std::int32_t> lo_pairs;
  std::vector<const std::uint8_t*> rows;
  for (int y = 0; y < height; ++y) {
    const std::int32_t* k = &c.weights[static_cast<std::size_t>(y) * c.ksize];
    const int taps = c.taps[y];
    const int pairs = (taps + 1) / 2;
    hi_pairs.resize(pairs);
    lo_pairs.resize(pairs);
    rows.resize(2 * pairs);
    for (int p = 0; p < pairs; ++p) {
      // An odd last tap pairs with itself at weight 0 (no row past the taps is read).
      const int t = 2 * p;
      const bool second = t + 1 < taps;
      const std::int32_t w0 = k[t];
      const std::int32_t w1 = second ? k[t + 1] : 0;
      hi_pairs[p] = two_halves(split_hi(w0), split_hi(w1));
      lo_pairs[p] = two_halves(split_lo(w0), split_lo(w1));
      rows[t] = src + src_stride * (c.start[y] - row_offset + t);
      rows[t + 1] = second ? rows[t] + src_stride : rows[t];
    }
    std::uint8_t* out = dst + static_cast<std::size_t>(row_values) * y;
    for (int j = 0; j < end; j += 16) {
      __m256i hi_low = _mm256_setzero_si256();  // values j .. j + 7
      __m256i hi_high = _mm256_setzero_si256();  // values j + 8 .. j + 15
      __m256i lo_low = _mm256_setzero_si256();
      __m256i lo_high = _mm256_setzero_si256();
      for (int p = 0; p < pairs; ++p) {
        const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[2 * p] + j));
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[2 * p + 1] + j));
        const __m256i low = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(a, b));  // a0 b0 a1 b1 ... as int16
        const __m256i high = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(a, b));
        const __m256i hi = _mm256_set1_epi32(hi_pairs[p]);
        const __m256i lo = _mm256_set1_epi32(lo_pairs[p]);
        hi_low = _mm256_add_epi32(hi_low, _mm256_madd_epi16(low, hi));
        lo_low = _mm256_add_epi32(lo_low, _mm256_madd_epi16(low, lo));
        hi_high = _mm256_add_epi32(hi_high, _mm256_madd_epi16(high, hi));
        lo_high = _mm256_add_epi32(lo_high, _mm256_madd_epi16(high, lo));
      }
      // Shifted sums lie in [-512, 511]: the signed 16-bit pack after the unsigned one is exact.
      const __m256i words = _mm256_permute4x64_epi64(
          _mm256_packus_epi32(shifted_sum(hi_low, lo_low), shifted_sum(hi_high, lo_high)), 0xD8);
      const __m256i bytes = _mm256_permute4x64_epi64(_mm256_packus_epi16(words, words), 0x08);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + j), _mm256_castsi256_si128(bytes));
    }
  }
  return end;
}
#else

bool avx2_kernels_enabled() { return false; }

int horizontal_rgb_avx2(const std::uint8_t*, std::size_t, std::size_t, int, const Coefficients&, const PlanarTarget&) {
  return 0;
}

int vertical_avx2(const std::uint8_t*, std::size_t, int, const Coefficients&, int, std::uint8_t*) { return 0; }

#endif

}  // namespace resize_detail
}  // namespace sdtrain

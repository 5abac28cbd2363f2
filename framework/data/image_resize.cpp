#include "framework/data/image_resize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

namespace sdtrain {
namespace {

// Both passes have hand-written AVX2 kernels, chosen at run time where the CPU has AVX2 (the
// baseline x86-64 build has none): the compiler neither vectorises 3-channel pixels with
// per-pixel coefficients nor keeps the vertical sums in registers. PIL's scalar loops do the rest
// (other CPUs, the last pixels of a row) and define the result: the kernels are bit-identical.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SDTRAIN_RESIZE_AVX2 1
#endif

// PIL: PRECISION_BITS = 32 - 8 - 2.
constexpr int kPrecisionBits = 22;

#ifdef SDTRAIN_RESIZE_AVX2
/// Whether to run the AVX2 kernels: the CPU has AVX2 and ATEN_CPU_CAPABILITY, PyTorch's switch
/// for its own vectorised kernels, does not ask for the scalar ones ("default").
bool has_avx2() {
  static const bool has = [] {
    const char* capability = std::getenv("ATEN_CPU_CAPABILITY");
    if (capability != nullptr && std::string(capability) == "default") return false;
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return has;
}
#endif

double bilinear_filter(double x) {
  if (x < 0.0) x = -x;
  if (x < 1.0) return 1.0 - x;
  return 0.0;
}

double bicubic_filter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

double sinc_filter(double x) {
  if (x == 0.0) return 1.0;
  x = x * M_PI;
  return std::sin(x) / x;
}

double lanczos_filter(double x) {
  if (-3.0 <= x && x < 3.0) return sinc_filter(x) * sinc_filter(x / 3);
  return 0.0;
}

struct Filter {
  double (*function)(double);
  double support;
};

Filter filter_for(ResampleFilter filter) {
  switch (filter) {
    case ResampleFilter::BILINEAR: return {bilinear_filter, 1.0};
    case ResampleFilter::BICUBIC: return {bicubic_filter, 2.0};
    case ResampleFilter::LANCZOS: return {lanczos_filter, 3.0};
    case ResampleFilter::NEAREST: break;
  }
  throw std::invalid_argument("resize: NEAREST has no convolution filter");
}

/// PIL's precompute_coeffs + normalize_coeffs_8bpc for outputs [first, first + count).
struct Coefficients {
  int ksize = 0;
  std::vector<int> start;   // first input index per output
  std::vector<int> taps;    // number of inputs per output
  std::vector<std::int32_t> weights;  // ksize per output, fixed point
};

Coefficients precompute(int in_size, int out_size, const Filter& filter, bool antialias, int first, int count) {
  const double scale = static_cast<double>(in_size) / out_size;
  double filterscale = scale;
  if (filterscale < 1.0 || !antialias) filterscale = 1.0;
  const double support = filter.support * filterscale;
  Coefficients c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.start.resize(count);
  c.taps.resize(count);
  c.weights.assign(static_cast<std::size_t>(count) * c.ksize, 0);
  std::vector<double> k(c.ksize);
  for (int i = 0; i < count; ++i) {
    const int xx = first + i;
    const double center = (xx + 0.5) * scale;
    double ww = 0.0;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    for (int x = 0; x < xmax; ++x) {
      const double w = filter.function((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    std::int32_t* out = &c.weights[static_cast<std::size_t>(i) * c.ksize];
    for (int x = 0; x < xmax; ++x) {
      const double v = ww != 0.0 ? k[x] / ww : k[x];
      out[x] = v < 0 ? static_cast<std::int32_t>(-0.5 + v * (1 << kPrecisionBits))
                     : static_cast<std::int32_t>(0.5 + v * (1 << kPrecisionBits));
    }
    c.start[i] = xmin;
    c.taps[i] = xmax;
  }
  return c;
}

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

/// One output pixel of the horizontal pass, scalar: PIL's loop.
template <int C>
inline void horizontal_pixel(const std::uint8_t* in, const Coefficients& c, int x, const PlanarTarget& out, int row) {
  const std::int32_t* k = &c.weights[static_cast<std::size_t>(x) * c.ksize];
  const std::uint8_t* p = in + static_cast<std::size_t>(c.start[x]) * C;
  std::int32_t acc[C];
  for (int ch = 0; ch < C; ++ch) acc[ch] = 1 << (kPrecisionBits - 1);
  const int taps = c.taps[x];
  if (taps == 4) {  // every inner pixel of a bicubic upscale: unrolled (sums are exact in any order)
    for (int ch = 0; ch < C; ++ch) {
      acc[ch] += p[ch] * k[0] + p[C + ch] * k[1] + p[2 * C + ch] * k[2] + p[3 * C + ch] * k[3];
    }
  } else {
    for (int t = 0; t < taps; ++t) {
      const std::int32_t w = k[t];
      for (int ch = 0; ch < C; ++ch) acc[ch] += p[t * C + ch] * w;
    }
  }
  for (int ch = 0; ch < C; ++ch) *out.at(ch, row, x) = clip8(acc[ch]);
}

/// Horizontal pass over output pixels [x_first, x_last) of `rows` rows starting at `src` (stride
/// in bytes), scalar.
template <int C>
void horizontal_pass(const std::uint8_t* src, std::size_t src_stride, int rows, const Coefficients& c, int x_first,
                     int x_last, const PlanarTarget& out) {
  for (int y = 0; y < rows; ++y) {
    const std::uint8_t* in = src + src_stride * y;
    for (int x = x_first; x < x_last; ++x) horizontal_pixel<C>(in, c, x, out, y);
  }
}

void horizontal_dispatch(int channels, const std::uint8_t* src, std::size_t stride, int rows, const Coefficients& c,
                         int x_first, int x_last, const PlanarTarget& out) {
  switch (channels) {
    case 1: horizontal_pass<1>(src, stride, rows, c, x_first, x_last, out); break;
    case 2: horizontal_pass<2>(src, stride, rows, c, x_first, x_last, out); break;
    case 3: horizontal_pass<3>(src, stride, rows, c, x_first, x_last, out); break;
    default: horizontal_pass<4>(src, stride, rows, c, x_first, x_last, out); break;
  }
}

#ifdef SDTRAIN_RESIZE_AVX2
/// The horizontal pass of 3-channel images with AVX2, bit-identical to horizontal_pass<3>.
///
/// PIL's 22-bit coefficients do not fit the 16-bit multiplies of pmaddwd, so each is split as
/// w = hi * 2^11 + lo with 0 <= lo < 2^11: sum(p * w) = 2^11 * sum(p * hi) + sum(p * lo), the same
/// integer as PIL's (exact even where the partial products wrap, since the total fits 32 bits).
/// One 16-byte load covers 4 taps of an RGB pixel; shuffles pair taps (t, t + 1) per channel as
/// 16-bit lanes, so one pmaddwd per pair yields [R, G, B, 0] partial sums. Two output pixels go
/// through the two 128-bit halves at once.
class Rgb16BitKernel {
 public:
  /// Builds the split coefficients of the pixels whose 16-byte loads stay inside a row of
  /// `row_bytes` bytes: a prefix [0, simd_end()) of the outputs (starts only grow along a row).
  Rgb16BitKernel(const Coefficients& c, std::size_t row_bytes) {
    int max_taps = 0;
    for (int taps : c.taps) max_taps = std::max(max_taps, taps);
    groups_ = (max_taps + 3) / 4;
    const int width = static_cast<int>(c.start.size());
    while (simd_end_ < width &&
           static_cast<std::size_t>(c.start[simd_end_]) * 3 + 12 * (groups_ - 1) + 16 <= row_bytes) {
      ++simd_end_;
    }
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
          const auto hi = static_cast<std::int16_t>(w >> 11);  // floor: lo below is never negative
          const auto lo = static_cast<std::int16_t>(w & 0x7FF);
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
      int x = 0;
      for (; x + 3 < simd_end_; x += 4) {
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
      for (; x < simd_end_; ++x) horizontal_pixel<3>(in, c, x, out, y);
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
    const __m256i rounding = _mm256_set1_epi32(1 << (kPrecisionBits - 1));
    const __m256i sum = _mm256_add_epi32(_mm256_add_epi32(_mm256_slli_epi32(hi, 11), lo), rounding);
    return _mm256_srai_epi32(sum, kPrecisionBits);
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
#endif

/// The horizontal pass into planes: the AVX2 kernel where the CPU has it and the image is RGB,
/// PIL's scalar loop for the rest.
void horizontal_to_planes(int channels, const std::uint8_t* src, std::size_t stride, std::size_t row_bytes, int rows,
                          const Coefficients& c, const PlanarTarget& out) {
  int scalar_first = 0;
#ifdef SDTRAIN_RESIZE_AVX2
  if (channels == 3 && has_avx2()) {
    const Rgb16BitKernel kernel(c, row_bytes);
    kernel.run(src, stride, rows, c, out);
    scalar_first = kernel.simd_end();
  }
#else
  (void)row_bytes;
#endif
  horizontal_dispatch(channels, src, stride, rows, c, scalar_first, static_cast<int>(c.start.size()), out);
}

/// Vertical pass over values [first, row_values) of each row: output row i mixes rows
/// (c.start[i] - row_offset) ... of `src`. PIL's loop, tap by tap over a row of sums so that
/// compilers vectorise it (SSE2, NEON).
void vertical_pass(const std::uint8_t* src, std::size_t src_stride, int row_offset, const Coefficients& c,
                   int first, int row_values, std::uint8_t* dst) {
  if (first >= row_values) return;
  std::vector<std::int32_t> acc(row_values - first);
  const int height = static_cast<int>(c.start.size());
  for (int y = 0; y < height; ++y) {
    std::int32_t* a = acc.data();
    const int count = row_values - first;
    for (int j = 0; j < count; ++j) a[j] = 1 << (kPrecisionBits - 1);
    const std::int32_t* k = &c.weights[static_cast<std::size_t>(y) * c.ksize];
    for (int t = 0; t < c.taps[y]; ++t) {
      const std::uint8_t* in = src + src_stride * (c.start[y] - row_offset + t) + first;
      const std::int32_t w = k[t];
      for (int j = 0; j < count; ++j) a[j] += in[j] * w;
    }
    std::uint8_t* out = dst + static_cast<std::size_t>(row_values) * y + first;
    for (int j = 0; j < count; ++j) out[j] = clip8(a[j]);
  }
}

#ifdef SDTRAIN_RESIZE_AVX2
/// The vertical pass with AVX2 over values [0, 16 * floor(row_values / 16)) of each row, 16 at
/// a time in registers; returns where it stopped. The coefficients are split as in
/// Rgb16BitKernel, and rows are paired so that one pmaddwd does two taps of 8 values.
__attribute__((target("avx2"))) int vertical_pass_avx2(const std::uint8_t* src, std::size_t src_stride,
                                                       int row_offset, const Coefficients& c, int row_values,
                                                       std::uint8_t* dst) {
  const int end = row_values / 16 * 16;
  const int height = static_cast<int>(c.start.size());
  const __m256i rounding = _mm256_set1_epi32(1 << (kPrecisionBits - 1));
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
      hi_pairs[p] = static_cast<std::int32_t>(static_cast<std::uint16_t>(w0 >> 11) |
                                              (static_cast<std::uint32_t>(w1 >> 11) << 16));
      lo_pairs[p] = (w0 & 0x7FF) | ((w1 & 0x7FF) << 16);
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
      const __m256i sum_low = _mm256_add_epi32(_mm256_add_epi32(_mm256_slli_epi32(hi_low, 11), lo_low), rounding);
      const __m256i sum_high = _mm256_add_epi32(_mm256_add_epi32(_mm256_slli_epi32(hi_high, 11), lo_high), rounding);
      // Shifted sums lie in [-512, 511]: the signed 16-bit pack after the unsigned one is exact.
      const __m256i words = _mm256_permute4x64_epi64(
          _mm256_packus_epi32(_mm256_srai_epi32(sum_low, kPrecisionBits), _mm256_srai_epi32(sum_high, kPrecisionBits)),
          0xD8);
      const __m256i bytes = _mm256_permute4x64_epi64(_mm256_packus_epi16(words, words), 0x08);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + j), _mm256_castsi256_si128(bytes));
    }
  }
  return end;
}
#endif

/// The vertical pass: the AVX2 kernel where the CPU has it, PIL's loop for the rest.
void vertical_to_plane(const std::uint8_t* src, std::size_t src_stride, int row_offset, const Coefficients& c,
                       int row_values, std::uint8_t* dst) {
  int first = 0;
#ifdef SDTRAIN_RESIZE_AVX2
  if (has_avx2()) first = vertical_pass_avx2(src, src_stride, row_offset, c, row_values, dst);
#endif
  vertical_pass(src, src_stride, row_offset, c, first, row_values, dst);
}

/// PIL's nearest-neighbour resize (ImagingScaleAffine): source index floor((x + 0.5) * scale),
/// with the position accumulated in double precision as PIL does.
std::vector<int> nearest_table(int in_size, int out_size, int first, int count) {
  const double scale = static_cast<double>(in_size) / out_size;
  std::vector<int> table(count);
  double position = scale * 0.5;
  for (int x = 0; x < first + count; ++x) {
    int index = position < 0.0 ? -1 : static_cast<int>(position);
    if (index >= in_size) index = in_size - 1;
    if (index < 0) index = 0;
    if (x >= first) table[x - first] = index;
    position += scale;
  }
  return table;
}

void check_arguments(const Image& image, int out_width, int out_height, const ResizeWindow& window) {
  const int C = image.channels;
  if (C < 1 || C > 4 || image.width <= 0 || image.height <= 0 ||
      image.pixels.size() != static_cast<std::size_t>(image.width) * image.height * C) {
    throw std::invalid_argument("resize: inconsistent image " + std::to_string(image.width) + "x" +
                                std::to_string(image.height) + "x" + std::to_string(C));
  }
  if (out_width <= 0 || out_height <= 0) {
    throw std::invalid_argument("resize: output size must be positive, got " + std::to_string(out_width) + "x" +
                                std::to_string(out_height));
  }
  if (window.x < 0 || window.y < 0 || window.width <= 0 || window.height <= 0 ||
      window.x + window.width > out_width || window.y + window.height > out_height) {
    throw std::invalid_argument("resize: window outside the " + std::to_string(out_width) + "x" +
                                std::to_string(out_height) + " output");
  }
}

ResizeWindow whole_if_empty(ResizeWindow window, int out_width, int out_height) {
  if (window.width == 0 && window.height == 0) return {0, 0, out_width, out_height};
  return window;
}

}  // namespace

void resize_window_planar(const Image& image, int out_width, int out_height, ResampleFilter filter, bool antialias,
                          ResizeWindow window, bool mirror, std::uint8_t* planes) {
  window = whole_if_empty(window, out_width, out_height);
  check_arguments(image, out_width, out_height, window);
  const int C = image.channels;
  const std::size_t in_stride = static_cast<std::size_t>(image.width) * C;
  const std::size_t plane_size = static_cast<std::size_t>(window.width) * window.height;

  if (filter == ResampleFilter::NEAREST) {
    const std::vector<int> xs = nearest_table(image.width, out_width, window.x, window.width);
    const std::vector<int> ys = nearest_table(image.height, out_height, window.y, window.height);
    const PlanarTarget out{planes, plane_size, window.width, mirror};
    for (int y = 0; y < window.height; ++y) {
      const std::uint8_t* in = image.pixels.data() + in_stride * ys[y];
      for (int x = 0; x < window.width; ++x) {
        for (int ch = 0; ch < C; ++ch) *out.at(ch, y, x) = in[static_cast<std::size_t>(xs[x]) * C + ch];
      }
    }
    return;
  }

  const Filter f = filter_for(filter);
  const bool need_horizontal = out_width != image.width;
  const bool need_vertical = out_height != image.height;

  // The source rows the vertical pass reads.
  Coefficients vertical;
  int row_first = window.y;
  int row_last = window.y + window.height;
  if (need_vertical) {
    vertical = precompute(image.height, out_height, f, antialias, window.y, window.height);
    row_first = vertical.start.front();
    row_last = vertical.start.back() + vertical.taps.back();
    for (std::size_t i = 0; i < vertical.start.size(); ++i) {
      row_first = std::min(row_first, vertical.start[i]);
      row_last = std::max(row_last, vertical.start[i] + vertical.taps[i]);
    }
  }
  const int rows = row_last - row_first;

  // The window's columns of those rows as planes, mirrored: straight into `planes` when no
  // vertical pass follows (then rows == window.height). Not zero-filled: every byte is written.
  std::unique_ptr<std::uint8_t[]> temp;
  std::uint8_t* mid = planes;
  if (need_vertical) {
    temp.reset(new std::uint8_t[static_cast<std::size_t>(C) * rows * window.width]);
    mid = temp.get();
  }
  const std::size_t mid_plane = static_cast<std::size_t>(rows) * window.width;
  const PlanarTarget mid_target{mid, mid_plane, window.width, mirror};
  const std::uint8_t* first_row = image.pixels.data() + in_stride * row_first;
  if (need_horizontal) {
    const Coefficients horizontal = precompute(image.width, out_width, f, antialias, window.x, window.width);
    horizontal_to_planes(C, first_row, in_stride, in_stride, rows, horizontal, mid_target);
  } else {
    for (int y = 0; y < rows; ++y) {
      const std::uint8_t* in = first_row + in_stride * y + static_cast<std::size_t>(window.x) * C;
      for (int x = 0; x < window.width; ++x) {
        for (int ch = 0; ch < C; ++ch) *mid_target.at(ch, y, x) = in[x * C + ch];
      }
    }
  }
  if (!need_vertical) return;
  for (int ch = 0; ch < C; ++ch) {
    vertical_to_plane(mid + mid_plane * ch, window.width, row_first, vertical, window.width, planes + plane_size * ch);
  }
}

Image resize_window(const Image& image, int out_width, int out_height, ResampleFilter filter, bool antialias,
                    ResizeWindow window) {
  window = whole_if_empty(window, out_width, out_height);
  check_arguments(image, out_width, out_height, window);
  const int C = image.channels;
  const std::size_t plane_size = static_cast<std::size_t>(window.width) * window.height;
  std::unique_ptr<std::uint8_t[]> planes(new std::uint8_t[plane_size * C]);
  resize_window_planar(image, out_width, out_height, filter, antialias, window, false, planes.get());
  Image out;
  out.width = window.width;
  out.height = window.height;
  out.channels = C;
  out.pixels.resize(plane_size * C);
  for (std::size_t i = 0; i < plane_size; ++i) {
    for (int ch = 0; ch < C; ++ch) out.pixels[i * C + ch] = planes[plane_size * ch + i];
  }
  return out;
}

}  // namespace sdtrain

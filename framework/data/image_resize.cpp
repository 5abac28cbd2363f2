#include "framework/data/image_resize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace sdtrain {
namespace {

// The vertical pass is compiled also for AVX2 and picked at load time where the CPU has it: the
// baseline x86-64 build has no 32-bit vector multiply (1.1x images/s in bench/data's data_bench;
// the horizontal pass, scalar over 3-channel pixels, gains nothing from it).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SDTRAIN_AVX2_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SDTRAIN_AVX2_CLONES
#endif

// PIL: PRECISION_BITS = 32 - 8 - 2.
constexpr int kPrecisionBits = 22;

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

/// Horizontal pass over `rows` rows starting at `src` (stride in bytes) into `dst` (packed).
template <int C>
void horizontal_pass(const std::uint8_t* src, std::size_t src_stride, int rows, const Coefficients& c,
                     std::uint8_t* dst) {
  const int width = static_cast<int>(c.start.size());
  for (int y = 0; y < rows; ++y) {
    const std::uint8_t* in = src + src_stride * y;
    std::uint8_t* out = dst + static_cast<std::size_t>(width) * C * y;
    for (int x = 0; x < width; ++x) {
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
      for (int ch = 0; ch < C; ++ch) out[x * C + ch] = clip8(acc[ch]);
    }
  }
}

/// Vertical pass: output row i mixes rows (c.start[i] - row_offset) ... of `src`.
SDTRAIN_AVX2_CLONES
void vertical_pass(const std::uint8_t* src, std::size_t src_stride, int row_offset, const Coefficients& c,
                   int row_values, std::uint8_t* dst) {
  std::vector<std::int32_t> acc(row_values);
  const int height = static_cast<int>(c.start.size());
  for (int y = 0; y < height; ++y) {
    std::int32_t* a = acc.data();
    for (int j = 0; j < row_values; ++j) a[j] = 1 << (kPrecisionBits - 1);
    const std::int32_t* k = &c.weights[static_cast<std::size_t>(y) * c.ksize];
    for (int t = 0; t < c.taps[y]; ++t) {
      const std::uint8_t* in = src + src_stride * (c.start[y] - row_offset + t);
      const std::int32_t w = k[t];
      for (int j = 0; j < row_values; ++j) a[j] += in[j] * w;
    }
    std::uint8_t* out = dst + static_cast<std::size_t>(row_values) * y;
    for (int j = 0; j < row_values; ++j) out[j] = clip8(a[j]);
  }
}

void horizontal_dispatch(int channels, const std::uint8_t* src, std::size_t stride, int rows,
                         const Coefficients& c, std::uint8_t* dst) {
  switch (channels) {
    case 1: horizontal_pass<1>(src, stride, rows, c, dst); break;
    case 2: horizontal_pass<2>(src, stride, rows, c, dst); break;
    case 3: horizontal_pass<3>(src, stride, rows, c, dst); break;
    default: horizontal_pass<4>(src, stride, rows, c, dst); break;
  }
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

}  // namespace

Image resize_window(const Image& image, int out_width, int out_height, ResampleFilter filter, bool antialias,
                    ResizeWindow window) {
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
  if (window.width == 0 && window.height == 0) window = {0, 0, out_width, out_height};
  if (window.x < 0 || window.y < 0 || window.width <= 0 || window.height <= 0 ||
      window.x + window.width > out_width || window.y + window.height > out_height) {
    throw std::invalid_argument("resize: window outside the " + std::to_string(out_width) + "x" +
                                std::to_string(out_height) + " output");
  }
  Image out;
  out.width = window.width;
  out.height = window.height;
  out.channels = C;
  out.pixels.resize(static_cast<std::size_t>(out.width) * out.height * C);
  const std::size_t in_stride = static_cast<std::size_t>(image.width) * C;
  const std::size_t out_stride = static_cast<std::size_t>(out.width) * C;

  if (filter == ResampleFilter::NEAREST) {
    const std::vector<int> xs = nearest_table(image.width, out_width, window.x, window.width);
    const std::vector<int> ys = nearest_table(image.height, out_height, window.y, window.height);
    for (int y = 0; y < out.height; ++y) {
      const std::uint8_t* in = image.pixels.data() + in_stride * ys[y];
      std::uint8_t* o = out.pixels.data() + out_stride * y;
      for (int x = 0; x < out.width; ++x) std::memcpy(o + x * C, in + static_cast<std::size_t>(xs[x]) * C, C);
    }
    return out;
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

  // Horizontal pass (or the window's columns of the source as they are).
  std::vector<std::uint8_t> temp;
  const std::uint8_t* mid = nullptr;
  std::size_t mid_stride = 0;
  if (need_horizontal) {
    const Coefficients horizontal = precompute(image.width, out_width, f, antialias, window.x, window.width);
    std::uint8_t* target = out.pixels.data();
    if (need_vertical) {
      temp.resize(out_stride * rows);
      target = temp.data();
    }
    horizontal_dispatch(C, image.pixels.data() + in_stride * row_first, in_stride, rows, horizontal, target);
    if (!need_vertical) return out;
    mid = temp.data();
    mid_stride = out_stride;
  } else {
    mid = image.pixels.data() + in_stride * row_first + static_cast<std::size_t>(window.x) * C;
    mid_stride = in_stride;
    if (!need_vertical) {
      for (int y = 0; y < out.height; ++y) {
        std::memcpy(out.pixels.data() + out_stride * y, mid + mid_stride * y, out_stride);
      }
      return out;
    }
  }
  vertical_pass(mid, mid_stride, row_first, vertical, static_cast<int>(out_stride), out.pixels.data());
  return out;
}

}  // namespace sdtrain

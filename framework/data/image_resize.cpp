#include "framework/data/image_resize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "framework/data/resize_kernels.h"

namespace sdtrain {
namespace {

// PIL's scalar loops, here, define the result; where the CPU has AVX2 the kernels of
// resize_kernels_avx2.cpp do the bulk of both passes with the same integer arithmetic and these
// loops do the rest (the last pixels of a row).
using resize_detail::clip8;
using resize_detail::Coefficients;
using resize_detail::kPrecisionBits;
using resize_detail::PlanarTarget;

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

/// The horizontal pass into planes: the AVX2 kernel where the CPU has it and the image is RGB,
/// PIL's scalar loop for the rest.
void horizontal_to_planes(int channels, const std::uint8_t* src, std::size_t stride, std::size_t row_bytes, int rows,
                          const Coefficients& c, const PlanarTarget& out) {
  int scalar_first = 0;
  if (channels == 3 && resize_detail::avx2_kernels_enabled()) {
    scalar_first = resize_detail::horizontal_rgb_avx2(src, stride, row_bytes, rows, c, out);
  }
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

/// The vertical pass: the AVX2 kernel where the CPU has it, PIL's loop for the rest.
void vertical_to_plane(const std::uint8_t* src, std::size_t src_stride, int row_offset, const Coefficients& c,
                       int row_values, std::uint8_t* dst) {
  int first = 0;
  if (resize_detail::avx2_kernels_enabled()) {
    first = resize_detail::vertical_avx2(src, src_stride, row_offset, c, row_values, dst);
  }
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

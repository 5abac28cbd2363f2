#pragma once
/// PIL-exact image resampling (Pillow's Resample.c and, for NEAREST, Geometry.c), the kernel
/// under the training transforms (transforms.h).
///
/// Separable convolution, horizontal pass first, with PIL's coefficient tables (support scaled by
/// the downscale factor, i.e. antialiased; bicubic a = -0.5; lanczos a = 3), PIL's 22-bit
/// fixed-point coefficients and its rounding and clipping of the 8-bit intermediate image, so the
/// result is bit-identical to `PIL.Image.resize(size, resample)`. Single-threaded per call (the
/// data loader parallelises across samples); no torch dependency. On x86-64 CPUs with AVX2 both
/// passes run hand-vectorised kernels with the same integer arithmetic; ATEN_CPU_CAPABILITY=default
/// in the environment (PyTorch's switch to its scalar kernels) selects PIL's scalar loops instead.
#include <cstdint>

#include "sdtrain/image.h"

namespace sdtrain {

/// The resampling filters, with PIL's names.
enum class ResampleFilter { NEAREST, BILINEAR, BICUBIC, LANCZOS };

/// A window of the resized image: the pixels [x, x + width) x [y, y + height) of the image that
/// resizing to out_width x out_height would give. Computing only the window is exactly equal to
/// resizing fully and cropping afterwards, and cheaper.
struct ResizeWindow {
  int x = 0;
  int y = 0;
  int width = 0;
  int height = 0;
};

/// Resizes `image` (1-4 interleaved 8-bit channels) to out_width x out_height and returns the
/// `window` of the result (the whole image when window.width == 0). `antialias` = true is PIL's
/// behaviour; false keeps the filter's support unscaled when downscaling (faster, aliased, matches
/// no PIL call). Throws std::invalid_argument for sizes <= 0, a window outside the output or an
/// inconsistent image.
Image resize_window(const Image& image, int out_width, int out_height, ResampleFilter filter, bool antialias,
                    ResizeWindow window = {});

/// The pixels of resize_window(), mirrored left-right when `mirror`, written channel-first: plane
/// c (c < image.channels) of window.width x window.height bytes starts at
/// `planes + c * window.width * window.height`. The caller owns `planes` (channels * width *
/// height bytes). What the training transforms use: the mirror and the channel split cost nothing
/// inside the passes. Throws as resize_window() does, before writing anything.
void resize_window_planar(const Image& image, int out_width, int out_height, ResampleFilter filter, bool antialias,
                          ResizeWindow window, bool mirror, std::uint8_t* planes);

}  // namespace sdtrain

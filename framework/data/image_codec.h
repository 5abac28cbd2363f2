#pragma once
/// Image decoding (JPEG, PNG, WebP through libjpeg-turbo, libpng and libwebp; image_decode.cpp)
/// and PNG encoding (image_png_encode.cpp).
///
/// Decoding reproduces what `PIL.Image.open(f).convert("RGB")` gives, so that a dataset trained
/// here sees the same pixels as the Python tools it replaces:
///   - grayscale is replicated to R = G = B; alpha is dropped (not composited); palette images are
///     looked up; 1/2/4-bit gray is scaled to 0..255;
///   - 16-bit RGB(A) and gray+alpha keep the high byte; 16-bit gray (PIL's mode "I;16") is clipped
///     to 255 as PIL's I;16 -> RGB conversion does;
///   - CMYK/YCCK JPEGs are read as Adobe (inverted) CMYK and converted with PIL's cmyk2rgb;
///   - no gamma, ICC profile or EXIF orientation is applied (PIL applies none either).
/// A JPEG whose data ends early is an error (PIL: "image file is truncated"); other libjpeg
/// warnings are ignored as PIL ignores them. Animated WebP is not supported.
/// All functions are thread-safe (no shared state).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "sdtrain/image.h"

namespace sdtrain {

/// The container formats decode_image() recognises from their first bytes.
enum class ImageFormat { UNKNOWN, JPEG, PNG, WEBP };

/// The format of `bytes` from its signature (JPEG FF D8 FF, PNG's 8-byte signature, RIFF....WEBP).
ImageFormat sniff_image_format(const std::string& bytes);

/// Width and height from the header only (no pixel data is decoded). Throws DataError naming
/// `source` when the header is unreadable or the format unsupported.
std::pair<int, int> read_image_size(const std::string& bytes, const std::string& source);

/// Decodes JPEG / PNG / WebP (sniffed from the bytes, not the name) to 8-bit RGB (channels == 3).
/// Images with more than `max_pixels` pixels (width * height from the header) are refused before
/// any pixel buffer is allocated (decompression bombs); max_pixels <= 0 means no limit.
/// Throws DataError whose message starts with `source` on empty, truncated, corrupt, oversized or
/// unsupported data. Never aborts the process: codec errors are turned into exceptions.
Image decode_image(const std::string& bytes, const std::string& source, std::int64_t max_pixels);

/// Reads `path` (read_file) and decodes it with decode_image(). Throws DataError
/// "<path>: cannot read: <reason>" when the file cannot be read.
Image read_image_file(const std::string& path, std::int64_t max_pixels);

/// Encodes an 8-bit image (1 = gray, 2 = gray+alpha, 3 = RGB or 4 = RGBA channels) as PNG, with
/// optional text chunks (key: 1-79 Latin-1 characters; value: UTF-8 text, stored as tEXt when it
/// is plain ASCII and as uncompressed iTXt otherwise, so PIL's Image.text reads both back).
/// Throws std::invalid_argument for an inconsistent image or key.
std::string encode_png(const Image& image,
                       const std::vector<std::pair<std::string, std::string>>& text = {});

/// encode_png() written to `path` atomically (write_file_atomic: a temporary file beside it,
/// fsynced, then renamed over `path`). Throws DataError naming `path` when it cannot be written.
void write_png_file(const std::string& path, const Image& image,
                    const std::vector<std::pair<std::string, std::string>>& text = {});

}  // namespace sdtrain

// PNG encoding (libpng) with text chunks, and the atomic PNG file writer.
#include <png.h>

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "framework/data/image_codec.h"
#include "framework/io/atomic_file.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

extern "C" void png_write_to_string(png_structp png, png_bytep data, png_size_t length) {
  auto* out = static_cast<std::string*>(png_get_io_ptr(png));
  out->append(reinterpret_cast<const char*>(data), length);
}

extern "C" void png_flush_nothing(png_structp) {}

extern "C" void png_write_warning_quiet(png_structp, png_const_charp) {}

struct PngWriteContext {
  std::jmp_buf jump;
  char message[256] = {0};
};

extern "C" void png_write_error_longjmp(png_structp png, png_const_charp message) {
  auto* context = static_cast<PngWriteContext*>(png_get_error_ptr(png));
  std::snprintf(context->message, sizeof(context->message), "%s", message);
  std::longjmp(context->jump, 1);
}

/// Returns false (message in context) on a libpng error. `text` entries hold pointers into the
/// caller's strings; `rows` points into the image.
bool encode_png_c(PngWriteContext* context, std::string* out, int width, int height, int color_type,
                  png_bytepp rows, png_textp text, int text_count) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, context, png_write_error_longjmp,
                                            png_write_warning_quiet);
  if (png == nullptr) return false;
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_write_struct(&png, nullptr);
    return false;
  }
  if (setjmp(context->jump)) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_set_write_fn(png, out, png_write_to_string, png_flush_nothing);
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8,
               color_type, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (text_count > 0) png_set_text(png, info, text, text_count);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  return true;
}

}  // namespace

std::string encode_png(const Image& image, const std::vector<std::pair<std::string, std::string>>& text) {
  int color_type = 0;
  switch (image.channels) {
    case 1: color_type = PNG_COLOR_TYPE_GRAY; break;
    case 2: color_type = PNG_COLOR_TYPE_GRAY_ALPHA; break;
    case 3: color_type = PNG_COLOR_TYPE_RGB; break;
    case 4: color_type = PNG_COLOR_TYPE_RGB_ALPHA; break;
    default: throw std::invalid_argument("encode_png: channels must be 1..4, got " + std::to_string(image.channels));
  }
  if (image.width <= 0 || image.height <= 0 ||
      image.pixels.size() != static_cast<std::size_t>(image.width) * image.height * image.channels) {
    throw std::invalid_argument("encode_png: pixel buffer does not match " + std::to_string(image.width) + "x" +
                                std::to_string(image.height) + "x" + std::to_string(image.channels));
  }
  std::vector<png_text> chunks(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i].first.empty() || text[i].first.size() > 79) {
      throw std::invalid_argument("encode_png: tEXt key must have 1-79 characters: '" + text[i].first + "'");
    }
    std::memset(&chunks[i], 0, sizeof(png_text));
    // tEXt holds Latin-1 only; a value with any non-ASCII byte (UTF-8 prompts) goes to iTXt.
    const bool ascii = std::all_of(text[i].second.begin(), text[i].second.end(),
                                   [](char c) { return static_cast<unsigned char>(c) < 0x80; });
    chunks[i].compression = ascii ? PNG_TEXT_COMPRESSION_NONE : PNG_ITXT_COMPRESSION_NONE;
    chunks[i].key = const_cast<char*>(text[i].first.c_str());
    chunks[i].text = const_cast<char*>(text[i].second.c_str());
    if (ascii) {
      chunks[i].text_length = text[i].second.size();
    } else {
      chunks[i].itxt_length = text[i].second.size();
    }
  }
  std::vector<png_bytep> rows(static_cast<std::size_t>(image.height));
  const std::size_t stride = static_cast<std::size_t>(image.width) * image.channels;
  for (int y = 0; y < image.height; ++y) {
    rows[y] = const_cast<png_bytep>(image.pixels.data() + stride * y);
  }
  std::string out;
  out.reserve(stride * image.height / 2 + 1024);
  PngWriteContext context;
  if (!encode_png_c(&context, &out, image.width, image.height, color_type, rows.data(), chunks.data(),
                    static_cast<int>(chunks.size()))) {
    throw std::runtime_error(std::string("encode_png: libpng failed: ") + context.message);
  }
  return out;
}

void write_png_file(const std::string& path, const Image& image,
                    const std::vector<std::pair<std::string, std::string>>& text) {
  const std::string bytes = encode_png(image, text);
  try {
    write_file_atomic(path, bytes);
  } catch (const FormatError& error) {
    // The atomic writer reports FormatError ("a malformed file" to the tools); an image that
    // cannot be written keeps this function's documented DataError, with the writer's message.
    throw DataError(error.what());
  }
}

}  // namespace sdtrain

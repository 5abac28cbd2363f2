// Image decoding: format sniffing and the JPEG (libjpeg-turbo), PNG (libpng) and WebP (libwebp)
// decoders behind decode_image(), each reproducing PIL's convert("RGB"). Encoding:
// image_png_encode.cpp.
#include "framework/data/image_codec.h"

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

// libjpeg's headers need FILE and size_t declared first.
#include <jerror.h>
#include <jpeglib.h>
#include <png.h>
#include <webp/decode.h>

#include "framework/util/file_util.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

// ---------------------------------------------------------------------------------------------
// Shared helpers

/// Outcome of a C-level decoder. The decoders below call setjmp, so they keep no C++ object with a
/// destructor in their own frames; everything they fill lives in the caller's DecodeState.
enum class Status { OK, CODEC_ERROR, TOO_LARGE, UNSUPPORTED };

struct DecodeState {
  const unsigned char* data = nullptr;
  std::size_t size = 0;
  std::int64_t max_pixels = 0;
  Image* image = nullptr;
  std::vector<unsigned char>* scratch = nullptr;
  std::vector<unsigned char*>* rows = nullptr;
  long long width = 0;
  long long height = 0;
  char message[JMSG_LENGTH_MAX + 64] = {0};
};

bool too_large(const DecodeState& state) {
  return state.max_pixels > 0 && state.width * state.height > state.max_pixels;
}

void allocate_rgb(DecodeState* state) {
  state->image->width = static_cast<int>(state->width);
  state->image->height = static_cast<int>(state->height);
  state->image->channels = 3;
  state->image->pixels.assign(static_cast<std::size_t>(state->width * state->height * 3), 0);
}

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw DataError(source + ": " + what);
}

// ---------------------------------------------------------------------------------------------
// JPEG (libjpeg-turbo)

struct JpegErrorManager {
  jpeg_error_mgr manager;
  std::jmp_buf jump;
  DecodeState* state;
};

extern "C" void jpeg_error_exit_longjmp(j_common_ptr cinfo) {
  auto* errors = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, errors->state->message);
  std::longjmp(errors->jump, 1);
}

extern "C" void jpeg_emit_message_quiet(j_common_ptr cinfo, int level) {
  // Running out of data is fatal, as in PIL ("image file is truncated"); libjpeg would otherwise
  // pad the image with grey. Other warnings (corrupt-but-decodable data) are ignored as PIL does.
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
    auto* errors = reinterpret_cast<JpegErrorManager*>(cinfo->err);
    std::snprintf(errors->state->message, sizeof(errors->state->message), "image data is truncated");
    std::longjmp(errors->jump, 1);
  }
  if (level < 0) cinfo->err->num_warnings++;
}

// PIL's MULDIV255 and cmyk2rgb after reading the inverted ("CMYK;I") Adobe samples.
inline unsigned char cmyk_to_channel(unsigned raw_c, unsigned raw_k) {
  const unsigned c = 255 - raw_c;
  const unsigned nk = raw_k;  // 255 - K with K = 255 - raw_k
  const unsigned tmp = c * nk + 128;
  const unsigned product = ((tmp >> 8) + tmp) >> 8;
  const int value = static_cast<int>(nk) - static_cast<int>(product);
  return static_cast<unsigned char>(value < 0 ? 0 : (value > 255 ? 255 : value));
}

Status decode_jpeg(DecodeState* state) {
  jpeg_decompress_struct cinfo;
  JpegErrorManager errors;
  cinfo.err = jpeg_std_error(&errors.manager);
  errors.manager.error_exit = jpeg_error_exit_longjmp;
  errors.manager.emit_message = jpeg_emit_message_quiet;
  errors.state = state;
  if (setjmp(errors.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return Status::CODEC_ERROR;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, state->data, static_cast<unsigned long>(state->size));
  jpeg_read_header(&cinfo, TRUE);
  state->width = cinfo.image_width;
  state->height = cinfo.image_height;
  if (too_large(*state)) {
    jpeg_destroy_decompress(&cinfo);
    return Status::TOO_LARGE;
  }
  const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  if (!cmyk && cinfo.num_components != 1 && cinfo.num_components != 3) {
    std::snprintf(state->message, sizeof(state->message), "unsupported JPEG with %d components",
                  cinfo.num_components);
    jpeg_destroy_decompress(&cinfo);
    return Status::UNSUPPORTED;
  }
  cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  allocate_rgb(state);
  unsigned char* out = state->image->pixels.data();
  const std::size_t row_bytes = static_cast<std::size_t>(state->width) * 3;
  if (!cmyk) {
    while (cinfo.output_scanline < cinfo.output_height) {
      JSAMPROW row = out + row_bytes * cinfo.output_scanline;
      jpeg_read_scanlines(&cinfo, &row, 1);
    }
  } else {
    JSAMPARRAY buffer = (*cinfo.mem->alloc_sarray)(reinterpret_cast<j_common_ptr>(&cinfo), JPOOL_IMAGE,
                                                   cinfo.output_width * 4, 1);
    while (cinfo.output_scanline < cinfo.output_height) {
      unsigned char* dst = out + row_bytes * cinfo.output_scanline;
      jpeg_read_scanlines(&cinfo, buffer, 1);
      const unsigned char* src = buffer[0];
      for (JDIMENSION x = 0; x < cinfo.output_width; ++x, src += 4, dst += 3) {
        dst[0] = cmyk_to_channel(src[0], src[3]);
        dst[1] = cmyk_to_channel(src[1], src[3]);
        dst[2] = cmyk_to_channel(src[2], src[3]);
      }
    }
  }
  // Every scanline is in; like PIL, do not insist on the trailing EOI marker.
  jpeg_abort_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return Status::OK;
}

// ---------------------------------------------------------------------------------------------
// PNG (libpng)

struct PngContext {
  std::jmp_buf jump;
  DecodeState* state;
  std::size_t position = 0;
};

extern "C" void png_error_longjmp(png_structp png, png_const_charp message) {
  auto* context = static_cast<PngContext*>(png_get_error_ptr(png));
  std::snprintf(context->state->message, sizeof(context->state->message), "%s", message);
  std::longjmp(context->jump, 1);
}

extern "C" void png_warning_quiet(png_structp, png_const_charp) {}

extern "C" void png_read_from_memory(png_structp png, png_bytep out, png_size_t count) {
  auto* context = static_cast<PngContext*>(png_get_io_ptr(png));
  if (count > context->state->size - context->position) png_error(png, "image data is truncated");
  std::memcpy(out, context->state->data + context->position, count);
  context->position += count;
}

Status decode_png(DecodeState* state) {
  PngContext context;
  context.state = state;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &context, png_error_longjmp,
                                           png_warning_quiet);
  if (png == nullptr) {
    std::snprintf(state->message, sizeof(state->message), "cannot create a PNG reader");
    return Status::CODEC_ERROR;
  }
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    std::snprintf(state->message, sizeof(state->message), "cannot create a PNG reader");
    return Status::CODEC_ERROR;
  }
  if (setjmp(context.jump)) {
    png_destroy_read_struct(&png, &info, nullptr);
    return Status::CODEC_ERROR;
  }
  png_set_read_fn(png, &context, png_read_from_memory);
  // Our own max_pixels check decides; libpng's default 1,000,000 per side would be stricter
  // than PIL for legitimate panoramas.
  png_set_user_limits(png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
  png_read_info(png, info);
  state->width = png_get_image_width(png, info);
  state->height = png_get_image_height(png, info);
  if (too_large(*state)) {
    png_destroy_read_struct(&png, &info, nullptr);
    return Status::TOO_LARGE;
  }
  const int color_type = png_get_color_type(png, info);
  const int bit_depth = png_get_bit_depth(png, info);
  // PIL opens 16-bit grey as mode "I;16" and converts it to RGB by clipping values above 255.
  const bool gray16 = color_type == PNG_COLOR_TYPE_GRAY && bit_depth == 16;
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if ((color_type & PNG_COLOR_MASK_COLOR) == 0 && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (!gray16 && bit_depth == 16) png_set_strip_16(png);  // PIL keeps the high byte
  if (gray16) png_set_swap(png);                         // little-endian 16-bit samples
  png_set_strip_alpha(png);                              // convert("RGB") drops alpha
  if (!gray16 && (color_type & PNG_COLOR_MASK_COLOR) == 0) png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const int channels = png_get_channels(png, info);
  const std::size_t row_bytes = png_get_rowbytes(png, info);
  const std::size_t expected = static_cast<std::size_t>(state->width) * (gray16 ? 2 : 3);
  if ((gray16 ? channels != 1 : channels != 3) || row_bytes != expected) {
    std::snprintf(state->message, sizeof(state->message),
                  "unsupported PNG layout (colour type %d, bit depth %d)", color_type, bit_depth);
    png_destroy_read_struct(&png, &info, nullptr);
    return Status::UNSUPPORTED;
  }
  allocate_rgb(state);
  unsigned char* base = state->image->pixels.data();
  if (gray16) {
    state->scratch->assign(row_bytes * static_cast<std::size_t>(state->height), 0);
    base = state->scratch->data();
  }
  state->rows->resize(static_cast<std::size_t>(state->height));
  for (long long y = 0; y < state->height; ++y) (*state->rows)[y] = base + row_bytes * y;
  png_read_image(png, state->rows->data());
  png_destroy_read_struct(&png, &info, nullptr);
  if (gray16) {
    const unsigned char* src = state->scratch->data();
    unsigned char* dst = state->image->pixels.data();
    const std::size_t count = static_cast<std::size_t>(state->width * state->height);
    for (std::size_t i = 0; i < count; ++i, src += 2, dst += 3) {
      const unsigned char v = src[1] == 0 ? src[0] : 255;
      dst[0] = dst[1] = dst[2] = v;
    }
  }
  return Status::OK;
}

// ---------------------------------------------------------------------------------------------
// WebP (libwebp)

const char* webp_status_text(VP8StatusCode status) {
  switch (status) {
    case VP8_STATUS_OK: return "ok";
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "corrupt WebP data";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported WebP feature";
    case VP8_STATUS_SUSPENDED: return "decoding suspended";
    case VP8_STATUS_USER_ABORT: return "decoding aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "image data is truncated";
  }
  return "unknown WebP error";
}

Status decode_webp(DecodeState* state) {
  WebPDecoderConfig config;
  if (!WebPInitDecoderConfig(&config)) {
    std::snprintf(state->message, sizeof(state->message), "libwebp version mismatch");
    return Status::CODEC_ERROR;
  }
  VP8StatusCode status = WebPGetFeatures(state->data, state->size, &config.input);
  if (status != VP8_STATUS_OK) {
    std::snprintf(state->message, sizeof(state->message), "%s", webp_status_text(status));
    return Status::CODEC_ERROR;
  }
  state->width = config.input.width;
  state->height = config.input.height;
  if (config.input.has_animation) {
    std::snprintf(state->message, sizeof(state->message), "animated WebP is not supported");
    return Status::UNSUPPORTED;
  }
  if (too_large(*state)) return Status::TOO_LARGE;
  allocate_rgb(state);
  config.output.colorspace = MODE_RGB;
  config.output.is_external_memory = 1;
  config.output.u.RGBA.rgba = state->image->pixels.data();
  config.output.u.RGBA.stride = static_cast<int>(state->width * 3);
  config.output.u.RGBA.size = state->image->pixels.size();
  status = WebPDecode(state->data, state->size, &config);
  WebPFreeDecBuffer(&config.output);
  if (status != VP8_STATUS_OK) {
    std::snprintf(state->message, sizeof(state->message), "%s", webp_status_text(status));
    return Status::CODEC_ERROR;
  }
  return Status::OK;
}

}  // namespace

ImageFormat sniff_image_format(const std::string& bytes) {
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return ImageFormat::JPEG;
  static const unsigned char kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (n >= 8 && std::memcmp(b, kPng, 8) == 0) return ImageFormat::PNG;
  if (n >= 12 && std::memcmp(b, "RIFF", 4) == 0 && std::memcmp(b + 8, "WEBP", 4) == 0) {
    return ImageFormat::WEBP;
  }
  return ImageFormat::UNKNOWN;
}

namespace {

std::string unknown_format_message(const std::string& bytes) {
  if (bytes.empty()) return "empty file (0 bytes)";
  const auto starts = [&](const char* magic) { return bytes.compare(0, std::strlen(magic), magic) == 0; };
  std::string name;
  if (starts("GIF8")) name = "GIF";
  else if (starts("BM")) name = "BMP";
  else if (starts("II*") || starts("MM")) name = "TIFF";
  else if (bytes.size() >= 12 && bytes.compare(4, 4, "ftyp") == 0) name = "HEIF/AVIF";
  if (!name.empty()) return "unsupported image format " + name + " (supported: JPEG, PNG, WebP)";
  return "not a JPEG, PNG or WebP image (unrecognised file signature)";
}

Image decode_impl(const std::string& bytes, const std::string& source, std::int64_t max_pixels,
                  bool header_only, std::pair<int, int>* size) {
  const ImageFormat format = sniff_image_format(bytes);
  if (format == ImageFormat::UNKNOWN) fail(source, unknown_format_message(bytes));
  Image image;
  std::vector<unsigned char> scratch;
  std::vector<unsigned char*> rows;
  DecodeState state;
  state.data = reinterpret_cast<const unsigned char*>(bytes.data());
  state.size = bytes.size();
  // A header-only read stops at the size check with a limit of one pixel.
  state.max_pixels = header_only ? 1 : max_pixels;
  state.image = &image;
  state.scratch = &scratch;
  state.rows = &rows;
  Status status = Status::CODEC_ERROR;
  const char* kind = "";
  switch (format) {
    case ImageFormat::JPEG: status = decode_jpeg(&state); kind = "JPEG"; break;
    case ImageFormat::PNG: status = decode_png(&state); kind = "PNG"; break;
    case ImageFormat::WEBP: status = decode_webp(&state); kind = "WebP"; break;
    case ImageFormat::UNKNOWN: break;
  }
  if (header_only && (status == Status::TOO_LARGE || status == Status::OK)) {
    *size = {static_cast<int>(state.width), static_cast<int>(state.height)};
    return image;
  }
  switch (status) {
    case Status::OK:
      if (image.width <= 0 || image.height <= 0) fail(source, std::string("invalid ") + kind + " image size 0");
      return image;
    case Status::TOO_LARGE: {
      std::ostringstream message;
      message << "image of " << state.width << "x" << state.height << " = " << state.width * state.height
              << " pixels exceeds the limit of " << max_pixels
              << " pixels (data.bad_data.max_image_pixels); refused as a possible decompression bomb";
      fail(source, message.str());
    }
    case Status::UNSUPPORTED:
      fail(source, state.message);
    case Status::CODEC_ERROR:
      break;
  }
  fail(source, std::string("cannot decode ") + kind + ": " + state.message);
}

}  // namespace

std::pair<int, int> read_image_size(const std::string& bytes, const std::string& source) {
  std::pair<int, int> size{0, 0};
  decode_impl(bytes, source, 0, true, &size);
  return size;
}

Image decode_image(const std::string& bytes, const std::string& source, std::int64_t max_pixels) {
  return decode_impl(bytes, source, max_pixels, false, nullptr);
}

Image read_image_file(const std::string& path, std::int64_t max_pixels) {
  return decode_image(read_file<DataError>(path), path, max_pixels);
}

}  // namespace sdtrain

// JPEG / PNG / WebP through the codec wrapper: the header reader, then the decoder under a pixel
// limit of 4 M pixels (an image above it must be refused before its buffer is allocated). Bad
// input must end in DataError.
#include <string>

#include "framework/data/image_codec.h"
#include "sdtrain/errors.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    sdtrain::read_image_size(bytes, "fuzz");
  } catch (const sdtrain::DataError&) {
  }
  try {
    const sdtrain::Image image = sdtrain::decode_image(bytes, "fuzz", 1 << 22);
    if (image.channels != 3 || image.pixels.size() != static_cast<std::size_t>(image.width) * image.height * 3) {
      __builtin_trap();  // the decoder's contract: 8-bit RGB of the stated size
    }
  } catch (const sdtrain::DataError&) {
  }
  return 0;
}

// A safetensors file's header (the 8-byte length, the JSON, the offsets against the file size).
// Bad input must end in FormatError.
#include "framework/io/safetensors_format.h"
#include "sdtrain/errors.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    sdtrain::parse_safetensors_header(data, size, "fuzz.safetensors");
  } catch (const sdtrain::FormatError&) {
  }
  return 0;
}

// The CLIP tokenizer on arbitrary bytes (invalid UTF-8 included): encode, then decode of what it
// encoded. No input may throw. `tokenize` (the 77-token input) is encode, then truncation and
// padding, which the input steers only through the number of ids: calling it here too repaired
// and encoded every input twice, half the target's time (truncation and padding are tested
// against the reference tokenizer in tests/tokenizer).
#include <cstdint>
#include <string>
#include <vector>

#include "plugins/models/stable_diffusion/tokenizer/clip_tokenizer.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const sdtrain::ClipTokenizer tokenizer;
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::vector<int64_t> ids = tokenizer.encode(text);
  for (int64_t id : ids) {
    if (id < 0 || id >= tokenizer.vocab_size()) __builtin_trap();
  }
  tokenizer.decode(ids, /*skip_special_tokens=*/false);
  return 0;
}

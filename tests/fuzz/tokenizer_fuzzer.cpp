// The CLIP tokenizer on arbitrary bytes (invalid UTF-8 included): encode, the 77-token input and
// decode of what it encoded. No input may throw.
#include <string>

#include "plugins/models/stable_diffusion/tokenizer/clip_tokenizer.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const sdtrain::ClipTokenizer tokenizer;
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::vector<int64_t> ids = tokenizer.encode(text);
  for (int64_t id : ids) {
    if (id < 0 || id >= tokenizer.vocab_size()) __builtin_trap();
  }
  tokenizer.tokenize({text});
  tokenizer.decode(ids, /*skip_special_tokens=*/false);
  return 0;
}

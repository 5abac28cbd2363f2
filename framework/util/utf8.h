#pragma once
/// UTF-8 validity for text read from outside (config files, --set values, safetensors headers).
#include <cstddef>
#include <string_view>

namespace sdtrain {

/// Byte offset of the first sequence in `text` that is not well-formed UTF-8 (a stray
/// continuation byte, a truncated sequence, an overlong form, a surrogate, a code point above
/// U+10FFFF), or std::string_view::npos when all of it is.
std::size_t find_invalid_utf8(std::string_view text);

}  // namespace sdtrain

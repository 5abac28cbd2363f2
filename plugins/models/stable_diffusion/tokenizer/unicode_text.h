#pragma once
/// Unicode helpers for the CLIP tokenizer's text cleanup, reproducing the Python semantics that
/// the reference tokenizer relies on (str.lower, str.isspace, the `regex` module's \s, \p{L},
/// \p{N}, unicodedata NFC). Character properties come from utf8proc; code points are char32_t.
#include <string>
#include <string_view>

namespace sdtrain::clip_text {

/// One UTF-8 sequence read at bytes[at] (at < bytes.size()), RFC 3629 strict: shortest form
/// only, no surrogates, nothing above U+10FFFF. `valid`: `code_point` spans `length` bytes;
/// otherwise `length` (>= 1) is the maximal invalid subpart, as Python's decoders skip it.
struct Utf8Sequence {
  char32_t code_point = 0;
  std::size_t length = 1;
  bool valid = false;
};
Utf8Sequence read_utf8_sequence(std::string_view bytes, std::size_t at);

/// Decodes UTF-8. Invalid or truncated sequences become U+FFFD, one per maximal invalid subpart
/// (Python's errors="replace"); never throws.
std::u32string utf8_to_u32(std::string_view utf8);

/// Encodes code points as UTF-8 (surrogates and values > U+10FFFF become U+FFFD).
std::string u32_to_utf8(std::u32string_view text);

/// Appends one code point as UTF-8 to `out`.
void append_utf8(char32_t cp, std::string& out);

/// `regex` \p{L}: general category L* (Lu, Ll, Lt, Lm, Lo).
bool is_letter(char32_t cp);

/// `regex` \p{N}: general category N* (Nd, Nl, No).
bool is_number(char32_t cp);

/// `regex` \s: the White_Space property (\t \n \v \f \r, U+0085, Zs, Zl, Zp).
bool is_regex_space(char32_t cp);

/// Python str.isspace(): White_Space plus the information separators U+001C..U+001F.
bool is_python_space(char32_t cp);

/// Python str.lower(): full lower-case mapping (U+0130 → "i\u0307") with the Final_Sigma rule.
std::u32string to_lower(std::u32string_view text);

/// Unicode canonical composition (NFC), as unicodedata.normalize("NFC", ...).
std::u32string nfc(std::u32string_view text);

}  // namespace sdtrain::clip_text

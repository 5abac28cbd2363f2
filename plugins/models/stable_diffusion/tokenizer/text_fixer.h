#pragma once
/// The text repair that the reference CLIP tokenizer runs before BPE: ftfy.fix_text with its
/// default configuration (ftfy 6.x), as transformers' CLIPTokenizer calls it when ftfy is
/// installed. Steps, per line and repeated until nothing changes: HTML entities (skipped from the
/// first line containing '<' on, as ftfy's "auto" mode), C1 controls read as Windows-1252, Latin
/// ligatures split, half/full-width forms to standard width, curly quotes straightened, line
/// breaks to '\n', ANSI terminal escapes and control characters removed, NFC.
///
/// Not reproduced: ftfy's mojibake detection and re-decoding (fix_encoding); text that ftfy would
/// re-decode (e.g. "Ã©" for "é") is kept as it is, so the tokens differ from the reference there.
#include <string>
#include <string_view>

namespace sdtrain::clip_text {

/// ftfy.fix_text(text) minus fix_encoding (see above). Pure function; thread-safe.
std::u32string fix_text(std::u32string_view text);

/// ftfy.fixes.unescape_html: replaces "&name;" (HTML5 names, and upper-cased names ftfy accepts)
/// and complete numeric references "&#123;" / "&#x7B;" with their text; anything else stays.
std::u32string unescape_html(std::u32string_view text);

}  // namespace sdtrain::clip_text

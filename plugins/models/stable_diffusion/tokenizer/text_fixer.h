#pragma once
/// The text repair that the reference CLIP tokenizer runs before BPE: ftfy.fix_text with its
/// default configuration (ftfy 6.x, Apache-2.0; reimplemented from its source), as transformers'
/// CLIPTokenizer calls it when ftfy is installed. The text is fixed per line (and per 1,000,000
/// code points within a longer line, ftfy's max_decode_length); each line, repeated until nothing
/// changes: HTML entities (skipped from the first line containing '<' on, as ftfy's "auto" mode),
/// mojibake repair (fix_encoding, see mojibake.h), C1 controls read as Windows-1252, Latin
/// ligatures split, half/full-width forms to standard width, curly quotes straightened, line
/// breaks to '\n', ANSI terminal escapes and control characters removed, NFC.
#include <string>
#include <string_view>

namespace sdtrain::clip_text {

/// ftfy.fix_text(text) (see above). Pure function; thread-safe.
std::u32string fix_text(std::u32string_view text);

/// ftfy.fixes.unescape_html: replaces "&name;" (HTML5 names, and upper-cased names ftfy accepts)
/// and complete numeric references "&#123;" / "&#x7B;" with their text; anything else stays.
std::u32string unescape_html(std::u32string_view text);

}  // namespace sdtrain::clip_text

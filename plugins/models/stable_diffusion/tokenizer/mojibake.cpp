#include "plugins/models/stable_diffusion/tokenizer/mojibake.h"

#include <vector>

#include "plugins/models/stable_diffusion/tokenizer/mojibake_codecs.h"
#include "plugins/models/stable_diffusion/tokenizer/mojibake_patterns.h"

namespace sdtrain::clip_text {
namespace {

bool is_c1(char32_t c) { return c >= 0x80 && c <= 0x9F; }

// ftfy.fixes.decode_inconsistent_utf8: fix_encoding on each UTF8_DETECTOR_RE match that is
// shorter than the whole text (so this cannot recurse forever) and is_bad by itself.
std::u32string decode_inconsistent_utf8(std::u32string_view text) {
  std::u32string out;
  size_t pos = 0;
  for (const auto& [begin, end] : mojibake::utf8_mojibake_runs(text)) {
    out.append(text.substr(pos, begin - pos));
    const std::u32string_view run = text.substr(begin, end - begin);
    if (run.size() < text.size() && mojibake::is_bad(run)) {
      out += fix_encoding(run);
    } else {
      out.append(run);
    }
    pos = end;
  }
  out.append(text.substr(pos));
  return out;
}

// ftfy._fix_encoding_one_step_and_explain with the default configuration.
std::u32string fix_encoding_step(std::u32string_view text) {
  bool ascii = true;
  for (const char32_t c : text) ascii = ascii && c < 0x80;
  if (ascii || !mojibake::is_bad(text)) return std::u32string(text);

  std::vector<bool> possible(static_cast<size_t>(mojibake::charmap_count()), false);
  std::string bytes;
  for (int codec = 0; codec < mojibake::charmap_count(); ++codec) {
    if (!mojibake::charmap_encode(text, codec, bytes)) continue;
    possible[static_cast<size_t>(codec)] = true;
    // Not for macroman, where an en dash before a space would look like altered UTF-8.
    if (codec != mojibake::macroman_codec() && mojibake::has_altered_utf8(bytes)) {
      bytes = mojibake::restore_byte_a0(bytes);
    }
    if (mojibake::charmap_is_sloppy(codec)) bytes = mojibake::replace_lossy_sequences(bytes);
    const bool variants = bytes.find('\xed') != std::string::npos || bytes.find('\xc0') != std::string::npos;
    if (auto fixed = mojibake::decode_utf8(bytes, variants)) return std::move(*fixed);
  }

  if (std::u32string fixed = decode_inconsistent_utf8(text); fixed != text) return fixed;

  // ftfy returns early here when "windows-1252" is among the possible codecs, but its list holds
  // "sloppy-windows-1252" instead, so that never happens; the latin-1 branch always runs.
  if (possible[static_cast<size_t>(mojibake::latin1_codec())]) {
    mojibake::charmap_encode(text, mojibake::latin1_codec(), bytes);
    if (auto fixed = mojibake::decode_windows1252(bytes)) {
      if (*fixed != text) return std::move(*fixed);
    }
  }

  bool has_c1 = false;
  for (const char32_t c : text) has_c1 = has_c1 || is_c1(c);
  if (has_c1) {
    std::u32string fixed(text);
    for (char32_t& c : fixed) {
      if (is_c1(c)) c = mojibake::sloppy_windows1252(static_cast<unsigned char>(c));
    }
    return fixed;
  }
  return std::u32string(text);
}

}  // namespace

std::u32string fix_encoding(std::u32string_view text) {
  std::u32string current(text);
  while (true) {
    std::u32string next = fix_encoding_step(current);
    if (next == current) return current;
    current = std::move(next);
  }
}

}  // namespace sdtrain::clip_text

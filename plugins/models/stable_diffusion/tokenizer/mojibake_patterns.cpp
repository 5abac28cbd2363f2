#include "plugins/models/stable_diffusion/tokenizer/mojibake_patterns.h"

#include <cstdint>

#include "plugins/models/stable_diffusion/tokenizer/unicode_text.h"

namespace sdtrain::clip_text::mojibake {
namespace {

struct CodeRange {
  char32_t lo, hi;
};
struct CharClass {
  uint32_t first;       // first range in kRanges
  uint32_t count;       // number of ranges
  uint8_t categories;   // 1: Python's Unicode \s, 2: Python's Unicode \w
  bool negate;
};
struct Sequence {
  bool at_start;  // anchored with '^' (start of the text; no MULTILINE)
  uint8_t length;
  uint16_t atoms[8];  // class per character
};
struct ByteClass {
  uint64_t words[4];
};
#include "plugins/models/stable_diffusion/tokenizer/mojibake_patterns.inc"

// Python's Unicode \w: str.isalnum() or '_' (letters, and characters with a numeric value,
// which Unicode puts in the N* categories).
bool is_python_word(char32_t c) { return c == '_' || is_letter(c) || is_number(c); }

bool in_class(uint16_t id, char32_t c) {
  const CharClass& k = kClasses[id];
  const CodeRange* lo = kRanges + k.first;
  const CodeRange* hi = lo + k.count;
  bool member = false;
  while (lo < hi) {  // binary search over sorted, disjoint ranges
    const CodeRange* mid = lo + (hi - lo) / 2;
    if (c < mid->lo) {
      hi = mid;
    } else if (c > mid->hi) {
      lo = mid + 1;
    } else {
      member = true;
      break;
    }
  }
  if (!member && (k.categories & 1) && is_python_space(c)) member = true;
  if (!member && (k.categories & 2) && is_python_word(c)) member = true;
  return member != k.negate;
}

bool matches_at(const Sequence& s, std::u32string_view text, size_t pos) {
  if (s.at_start && pos != 0) return false;
  if (text.size() - pos < s.length) return false;
  for (size_t k = 0; k < s.length; ++k) {
    if (!in_class(s.atoms[k], text[pos + k])) return false;
  }
  return true;
}

bool in_byte_class(uint16_t id, unsigned char b) { return (kByteClasses[id].words[b >> 6] >> (b & 63)) & 1u; }

// Length of the first sequence of `seqs` matching `bytes` at `pos`, 0 if none.
template <size_t N>
size_t byte_match_at(const Sequence (&seqs)[N], std::string_view bytes, size_t pos) {
  for (const Sequence& s : seqs) {
    if (bytes.size() - pos < s.length) continue;
    size_t k = 0;
    while (k < s.length && in_byte_class(s.atoms[k], static_cast<unsigned char>(bytes[pos + k]))) ++k;
    if (k == s.length) return k;
  }
  return 0;
}

// A_GRAVE_WORD_RE = b"\xc3 (?! |quele|quela|quilo|s )".
bool a_grave_word_at(std::string_view bytes, size_t pos) {
  if (bytes.substr(pos, 2) != "\xc3 ") return false;
  const std::string_view rest = bytes.substr(pos + 2);
  for (const std::string_view no : {" ", "quele", "quela", "quilo", "s "}) {
    if (rest.substr(0, no.size()) == no) return false;
  }
  return true;
}

}  // namespace

bool is_bad(std::u32string_view text) {
  for (size_t pos = 0; pos < text.size(); ++pos) {
    for (const Sequence& s : kBadnessSequences) {
      if (matches_at(s, text, pos)) return true;
    }
  }
  return false;
}

bool find_utf8_mojibake(std::u32string_view text, size_t from, size_t& begin, size_t& end) {
  for (size_t pos = from; pos < text.size(); ++pos) {
    if (pos > 0 && in_class(kUtf8DetectorNotAfter, text[pos - 1])) continue;
    // (alt1|alt2|alt3)+ with nothing after it: greedy, each round the first alternative that
    // matches (what the backtracking engine settles on, as no later failure can undo a round).
    size_t cur = pos;
    for (bool more = true; more;) {
      more = false;
      for (const Sequence& s : kUtf8DetectorSequences) {
        if (matches_at(s, text, cur)) {
          cur += s.length;
          more = true;
          break;
        }
      }
    }
    if (cur > pos) {
      begin = pos;
      end = cur;
      return true;
    }
  }
  return false;
}

bool has_altered_utf8(std::string_view bytes) {
  for (size_t pos = 0; pos < bytes.size(); ++pos) {
    if (byte_match_at(kAlteredUtf8Sequences, bytes, pos)) return true;
  }
  return false;
}

std::string restore_byte_a0(std::string_view bytes) {
  std::string graved;
  graved.reserve(bytes.size() + 8);
  for (size_t pos = 0; pos < bytes.size();) {
    if (a_grave_word_at(bytes, pos)) {
      graved += "\xc3\xa0 ";
      pos += 2;
    } else {
      graved.push_back(bytes[pos++]);
    }
  }
  std::string out;
  out.reserve(graved.size());
  for (size_t pos = 0; pos < graved.size();) {
    if (const size_t len = byte_match_at(kAlteredUtf8Sequences, graved, pos)) {
      for (size_t k = 0; k < len; ++k) out.push_back(graved[pos + k] == ' ' ? '\xa0' : graved[pos + k]);
      pos += len;
    } else {
      out.push_back(graved[pos++]);
    }
  }
  return out;
}

std::string replace_lossy_sequences(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (size_t pos = 0; pos < bytes.size();) {
    if (const size_t len = byte_match_at(kLossyUtf8Sequences, bytes, pos)) {
      out += "\xef\xbf\xbd";
      pos += len;
    } else {
      out.push_back(bytes[pos++]);
    }
  }
  return out;
}

}  // namespace sdtrain::clip_text::mojibake

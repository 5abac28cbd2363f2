#include "plugins/models/stable_diffusion/tokenizer/mojibake_patterns.h"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <vector>

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

constexpr size_t kClassCount = std::size(kClasses);
static_assert(kClassCount <= 128, "Mask holds 128 classes");

// Membership of one code point in every class, bit k for kClasses[k].
struct Mask {
  uint64_t w[2] = {0, 0};
  void set(size_t k) { w[k >> 6] |= uint64_t{1} << (k & 63); }
  bool test(size_t k) const { return (w[k >> 6] >> (k & 63)) & 1u; }
};

// The classes' ranges cut the code points into intervals of equal range membership; `starts`
// holds each interval's first code point, `masks` its membership before negation (which
// slow_classify applies). ASCII is precomputed completely, \s / \w included; for other code
// points those two categories are looked up per atom (category_member), as few atoms need them.
struct ClassIndex {
  std::vector<char32_t> starts;
  std::vector<Mask> masks;
  Mask space, word, negated;  // classes with \s, with \w, negated (never with \s or \w)
  Mask categorized;           // space | word
  Mask ascii[128];

  ClassIndex() {
    std::vector<char32_t> cuts = {0};
    for (const CodeRange& r : kRanges) {
      cuts.push_back(r.lo);
      cuts.push_back(r.hi + 1);
    }
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    starts = cuts;
    masks.resize(starts.size());
    for (size_t k = 0; k < kClassCount; ++k) {
      const CharClass& cls = kClasses[k];
      for (uint32_t r = cls.first; r < cls.first + cls.count; ++r) {
        auto it = std::lower_bound(starts.begin(), starts.end(), kRanges[r].lo);
        for (; it != starts.end() && *it <= kRanges[r].hi; ++it) masks[static_cast<size_t>(it - starts.begin())].set(k);
      }
      if (cls.categories & 1) space.set(k);
      if (cls.categories & 2) word.set(k);
      if (cls.negate) negated.set(k);
    }
    for (int i = 0; i < 2; ++i) categorized.w[i] = space.w[i] | word.w[i];
    for (char32_t c = 0; c < 128; ++c) ascii[c] = slow_classify(c);
  }

  // Membership by ranges and negation; the \s / \w categories only when `categories`, as
  // they cost property look-ups (category_member adds them where a sequence needs them).
  Mask slow_classify(char32_t c, bool categories = true) const {
    const auto it = std::upper_bound(starts.begin(), starts.end(), c);
    Mask m = masks[static_cast<size_t>(it - starts.begin()) - 1];
    const bool is_space = categories && is_python_space(c);
    const bool is_word = categories && is_python_word(c);
    for (int i = 0; i < 2; ++i) {
      if (is_space) m.w[i] |= space.w[i];
      if (is_word) m.w[i] |= word.w[i];
      m.w[i] ^= negated.w[i];
    }
    return m;
  }

  Mask classify(char32_t c) const { return c < 128 ? ascii[c] : slow_classify(c, false); }

  // Whether non-ASCII c is in class k through its \s / \w category (classify leaves that out).
  bool category_member(size_t k, char32_t c) const {
    if (c < 128) return false;
    return (space.test(k) && is_python_space(c)) || (word.test(k) && is_python_word(c));
  }
};

const ClassIndex& class_index() {
  static const ClassIndex index;
  return index;
}

bool matches_at(const Sequence& s, std::u32string_view text, const std::vector<Mask>& masks, size_t pos,
                const ClassIndex& index) {
  if (s.at_start && pos != 0) return false;
  if (masks.size() - pos < s.length) return false;
  for (size_t k = 0; k < s.length; ++k) {
    if (!masks[pos + k].test(s.atoms[k]) && !index.category_member(s.atoms[k], text[pos + k])) {
      return false;
    }
  }
  return true;
}

std::vector<Mask> classify_all(std::u32string_view text) {
  const ClassIndex& index = class_index();
  std::vector<Mask> masks(text.size());
  for (size_t i = 0; i < text.size(); ++i) masks[i] = index.classify(text[i]);
  return masks;
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
  // The badness sequences grouped by their first class, so a position only tries the sequences
  // whose first character it can be.
  struct ByFirst {
    Mask any;
    std::vector<uint8_t> sequences[kClassCount];
  };
  static const ByFirst by_first = [] {
    ByFirst b;
    for (size_t i = 0; i < std::size(kBadnessSequences); ++i) {
      b.any.set(kBadnessSequences[i].atoms[0]);
      b.sequences[kBadnessSequences[i].atoms[0]].push_back(static_cast<uint8_t>(i));
    }
    return b;
  }();
  static_assert(std::size(kBadnessSequences) < 256, "sequence index is a uint8_t");
  const ClassIndex& index = class_index();
  const std::vector<Mask> masks = classify_all(text);
  size_t next_non_ascii = 0;
  for (size_t pos = 0; pos < text.size(); ++pos) {
    // Every sequence needs a non-ASCII character, so only positions at most
    // kBadnessMaxLength - 1 before one can start a match.
    if (next_non_ascii < pos) next_non_ascii = pos;
    while (next_non_ascii < text.size() && text[next_non_ascii] < 0x80) ++next_non_ascii;
    if (next_non_ascii == text.size()) break;
    if (next_non_ascii - pos >= kBadnessMaxLength) pos = next_non_ascii - (kBadnessMaxLength - 1);
    for (size_t word = 0; word < 2; ++word) {
      // A non-ASCII character may also be in a \s / \w class that its mask leaves out.
      const uint64_t maybe = masks[pos].w[word] | (text[pos] >= 128 ? index.categorized.w[word] : 0);
      for (uint64_t bits = maybe & by_first.any.w[word]; bits != 0; bits &= bits - 1) {
        const size_t k = word * 64 + static_cast<size_t>(__builtin_ctzll(bits));
        for (const uint8_t i : by_first.sequences[k]) {
          if (matches_at(kBadnessSequences[i], text, masks, pos, index)) return true;
        }
      }
    }
  }
  return false;
}

std::vector<std::pair<size_t, size_t>> utf8_mojibake_runs(std::u32string_view text) {
  const ClassIndex& index = class_index();
  const std::vector<Mask> masks = classify_all(text);
  std::vector<std::pair<size_t, size_t>> runs;
  for (size_t pos = 0; pos < text.size(); ++pos) {
    if (pos > 0 && masks[pos - 1].test(kUtf8DetectorNotAfter)) continue;
    // (alt1|alt2|alt3)+ with nothing after it: greedy, each round the first alternative that
    // matches (what the backtracking engine settles on, as no later failure can undo a round).
    size_t cur = pos;
    for (bool more = true; more;) {
      more = false;
      for (const Sequence& s : kUtf8DetectorSequences) {
        if (matches_at(s, text, masks, cur, index)) {
          cur += s.length;
          more = true;
          break;
        }
      }
    }
    if (cur > pos) {
      runs.emplace_back(pos, cur);
      pos = cur - 1;  // the next search starts where this run ended
    }
  }
  return runs;
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

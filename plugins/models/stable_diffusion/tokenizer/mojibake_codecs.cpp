#include "plugins/models/stable_diffusion/tokenizer/mojibake_codecs.h"

#include <algorithm>
#include <iterator>

#include "plugins/models/stable_diffusion/tokenizer/unicode_text.h"

namespace sdtrain::clip_text::mojibake {
namespace {

struct CharmapEntry {
  char16_t cp;
  unsigned char byte;
};
#include "plugins/models/stable_diffusion/tokenizer/charmap_tables.inc"

bool in(unsigned char b, unsigned char lo, unsigned char hi) { return b >= lo && b <= hi; }

}  // namespace

int charmap_count() { return kCharmapCount; }
bool charmap_is_sloppy(int codec) { return kCharmapSloppy[codec]; }
int latin1_codec() { return kLatin1; }
int macroman_codec() { return kMacRoman; }

bool charmap_encode(std::u32string_view text, int codec, std::string& out) {
  out.clear();
  out.reserve(text.size());
  const CharmapEntry* begin = kCharmapEncode[codec];
  const CharmapEntry* end = begin + kCharmapEncodeSize[codec];
  for (const char32_t c : text) {
    if (c < 0x80 && c != 0x1A) {  // ASCII is itself in every codec (U+001A only in some)
      out.push_back(static_cast<char>(c));
      continue;
    }
    if (c > 0xFFFF) return false;
    const auto it = std::lower_bound(begin, end, c, [](const CharmapEntry& e, char32_t v) {
      return static_cast<char32_t>(e.cp) < v;
    });
    if (it == end || it->cp != c) return false;
    out.push_back(static_cast<char>(it->byte));
  }
  return true;
}

char32_t sloppy_windows1252(unsigned char byte) { return kCharmapDecode[kSloppyWindows1252][byte]; }

std::optional<std::u32string> decode_windows1252(std::string_view bytes) {
  std::u32string out;
  out.reserve(bytes.size());
  for (const char ch : bytes) {
    const auto b = static_cast<unsigned char>(ch);
    if (std::find(std::begin(kWindows1252Undefined), std::end(kWindows1252Undefined), b) !=
        std::end(kWindows1252Undefined)) {
      return std::nullopt;
    }
    out.push_back(sloppy_windows1252(b));  // equal to strict windows-1252 on defined bytes
  }
  return out;
}

std::optional<std::u32string> decode_utf8(std::string_view bytes, bool variants) {
  std::u32string out;
  out.reserve(bytes.size());
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char b = p[i];
    if (b < 0x80) {
      out.push_back(b);
      ++i;
      continue;
    }
    if (variants) {
      // Java's two-byte U+0000.
      if (b == 0xC0 && i + 1 < n && p[i + 1] == 0x80) {
        out.push_back(0);
        i += 2;
        continue;
      }
      // CESU-8: a UTF-16 surrogate pair encoded as two three-byte sequences.
      if (b == 0xED && i + 5 < n && in(p[i + 1], 0xA0, 0xAF) && in(p[i + 2], 0x80, 0xBF) &&
          p[i + 3] == 0xED && in(p[i + 4], 0xB0, 0xBF) && in(p[i + 5], 0x80, 0xBF)) {
        out.push_back(((static_cast<char32_t>(p[i + 1]) & 0x0F) << 16) +
                      ((static_cast<char32_t>(p[i + 2]) & 0x3F) << 10) +
                      ((static_cast<char32_t>(p[i + 4]) & 0x0F) << 6) + (p[i + 5] & 0x3F) + 0x10000);
        i += 6;
        continue;
      }
    }
    const Utf8Sequence sequence = read_utf8_sequence(bytes, i);
    if (!sequence.valid) return std::nullopt;
    out.push_back(sequence.code_point);
    i += sequence.length;
  }
  return out;
}

}  // namespace sdtrain::clip_text::mojibake

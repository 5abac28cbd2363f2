#include "plugins/models/stable_diffusion/tokenizer/mojibake_codecs.h"

#include <algorithm>
#include <iterator>

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
const char* charmap_name(int codec) { return kCharmapNames[codec]; }
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
    // Strict UTF-8 (RFC 3629): shortest form only, no surrogates, nothing above U+10FFFF.
    size_t len;
    char32_t cp;
    unsigned char lo = 0x80, hi = 0xBF;  // valid range of the second byte
    if (in(b, 0xC2, 0xDF)) {
      len = 2; cp = b & 0x1F;
    } else if (in(b, 0xE0, 0xEF)) {
      len = 3; cp = b & 0x0F;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (in(b, 0xF0, 0xF4)) {
      len = 4; cp = b & 0x07;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    } else {
      return std::nullopt;
    }
    if (i + len > n) return std::nullopt;
    for (size_t k = 1; k < len; ++k) {
      const unsigned char c = p[i + k];
      if (!in(c, k == 1 ? lo : 0x80, k == 1 ? hi : 0xBF)) return std::nullopt;
      cp = (cp << 6) | (c & 0x3F);
    }
    out.push_back(cp);
    i += len;
  }
  return out;
}

}  // namespace sdtrain::clip_text::mojibake

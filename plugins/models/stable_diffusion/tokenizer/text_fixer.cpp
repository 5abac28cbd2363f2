#include "plugins/models/stable_diffusion/tokenizer/text_fixer.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <unordered_map>

#include "plugins/models/stable_diffusion/tokenizer/mojibake.h"
#include "plugins/models/stable_diffusion/tokenizer/unicode_text.h"

namespace sdtrain::clip_text {
namespace {

struct HtmlEntity {
  const char* name;
  const char* text;
};
struct InvalidCharRef {
  unsigned num;
  const char* text;
};
#include "plugins/models/stable_diffusion/tokenizer/html_entities.inc"

bool is_ascii_alnum(char32_t c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Python's html.unescape for one numeric reference body (digits after "&#", without ';').
// Returns false when html.unescape would not consume the whole reference.
bool unescape_numeric(std::u32string_view body, std::u32string& out) {
  if (body.empty()) return false;
  const bool hex = body[0] == 'x' || body[0] == 'X';
  std::u32string_view digits = hex ? body.substr(1) : body;
  if (digits.empty()) return false;
  unsigned long long num = 0;
  for (char32_t c : digits) {
    int v;
    if (c >= '0' && c <= '9') v = static_cast<int>(c - '0');
    else if (hex && c >= 'a' && c <= 'f') v = static_cast<int>(c - 'a' + 10);
    else if (hex && c >= 'A' && c <= 'F') v = static_cast<int>(c - 'A' + 10);
    else return false;
    num = num * (hex ? 16 : 10) + static_cast<unsigned>(v);
    if (num > 0x10FFFFull) num = 0x110000ull;  // saturate: anything larger is invalid alike
  }
  for (const auto& ref : kInvalidCharRefs) {
    if (ref.num == num) {
      out += utf8_to_u32(ref.text);
      return true;
    }
  }
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) {
    out.push_back(0xFFFD);
    return true;
  }
  // html._invalid_codepoints: controls, noncharacters U+FDD0..U+FDEF and U+xFFFE/U+xFFFF.
  const bool invalid = (num >= 0x1 && num <= 0x8) || num == 0xB || (num >= 0xE && num <= 0x1F) ||
                       (num >= 0x7F && num <= 0x9F) || (num >= 0xFDD0 && num <= 0xFDEF) ||
                       (num & 0xFFFE) == 0xFFFE;
  if (!invalid) out.push_back(static_cast<char32_t>(num));
  return true;
}

const char* find_entity(const std::string& name) {
  const auto* begin = std::begin(kHtmlEntities);
  const auto* end = std::end(kHtmlEntities);
  const auto* it = std::lower_bound(begin, end, name, [](const HtmlEntity& e, const std::string& n) {
    return std::strcmp(e.name, n.c_str()) < 0;
  });
  return it != end && name == it->name ? it->text : nullptr;
}

// ftfy.chardata.LIGATURES.
const char* ligature(char32_t c) {
  switch (c) {
    case 0x132: return "IJ";
    case 0x133: return "ij";
    case 0x149: return "\xca\xbcn";
    case 0x1F1: return "DZ";
    case 0x1F2: return "Dz";
    case 0x1F3: return "dz";
    case 0x1C4: return "D\xc5\xbd";
    case 0x1C5: return "D\xc5\xbe";
    case 0x1C6: return "d\xc5\xbe";
    case 0x1C7: return "LJ";
    case 0x1C8: return "Lj";
    case 0x1C9: return "lj";
    case 0x1CA: return "NJ";
    case 0x1CB: return "Nj";
    case 0x1CC: return "nj";
    case 0xFB00: return "ff";
    case 0xFB01: return "fi";
    case 0xFB02: return "fl";
    case 0xFB03: return "ffi";
    case 0xFB04: return "ffl";
    case 0xFB05: return "\xc5\xbft";
    case 0xFB06: return "st";
    default: return nullptr;
  }
}

// ftfy.chardata.WIDTH_MAP: U+3000 → ' ' and every U+FF01..U+FFEF whose NFKC form differs.
const std::unordered_map<char32_t, std::u32string>& width_map() {
  static const auto* map = [] {
    auto* m = new std::unordered_map<char32_t, std::u32string>();
    m->emplace(0x3000, std::u32string(1, U' '));
    for (char32_t c = 0xFF01; c < 0xFFF0; ++c) {
      std::string utf8;
      append_utf8(c, utf8);
      std::unique_ptr<utf8proc_uint8_t, void (*)(void*)> nfkc(
          utf8proc_NFKC(reinterpret_cast<const utf8proc_uint8_t*>(utf8.c_str())), &std::free);
      if (!nfkc) continue;  // unassigned code point
      std::u32string alt = utf8_to_u32(reinterpret_cast<const char*>(nfkc.get()));
      if (alt != std::u32string(1, c)) (*m)[c] = std::move(alt);
    }
    return m;
  }();
  return *map;
}

// ftfy.chardata.CONTROL_CHARS.
bool is_removed_control(char32_t c) {
  return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F ||
         (c >= 0x206A && c <= 0x206F) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

// Windows-1252 as ftfy's "sloppy" codec reads bytes 0x80..0x9F (undefined bytes keep their value).
char32_t sloppy_cp1252(char32_t c) {
  static constexpr char16_t kHigh[32] = {
      0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
      0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,
      0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
      0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178};
  return kHigh[c - 0x80];
}

bool is_decimal_digit(char32_t c) {
  return utf8proc_category(static_cast<utf8proc_int32_t>(c)) == UTF8PROC_CATEGORY_ND;
}

// One pass of ftfy's fixers after fix_encoding, in ftfy's order (fix_c1_controls first).
std::u32string fix_pass(std::u32string_view in) {
  std::u32string a;
  a.reserve(in.size());
  // fix_c1_controls, fix_latin_ligatures, fix_character_width, uncurl_quotes: per-character
  // translations, applied in ftfy's order to each character and to what earlier steps produced.
  const auto& widths = width_map();
  auto uncurl = [&a](char32_t c) {
    if (c == 0x2BC || (c >= 0x2018 && c <= 0x201B)) c = '\'';
    else if (c >= 0x201C && c <= 0x201F) c = '"';
    a.push_back(c);
  };
  auto widen = [&](char32_t c) {
    if (c == 0x3000 || (c >= 0xFF01 && c < 0xFFF0)) {
      const auto it = widths.find(c);
      if (it != widths.end()) {
        for (char32_t w : it->second) uncurl(w);
        return;
      }
    }
    uncurl(c);
  };
  for (char32_t c : in) {
    if (c >= 0x80 && c <= 0x9F) c = sloppy_cp1252(c);
    if (const char* lig = ligature(c)) {
      for (char32_t l : utf8_to_u32(lig)) widen(l);
    } else {
      widen(c);
    }
  }
  // fix_line_breaks
  std::u32string b;
  b.reserve(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    const char32_t c = a[i];
    if (c == '\r') {
      b.push_back('\n');
      if (i + 1 < a.size() && a[i + 1] == '\n') ++i;
    } else if (c == 0x2028 || c == 0x2029 || c == 0x85) {
      b.push_back('\n');
    } else {
      b.push_back(c);
    }
  }
  // fix_surrogates: nothing to do, char32_t text decoded from UTF-8 holds no surrogates.
  // remove_terminal_escapes: "\x1b[" (digits|;)* [a-zA-Z]
  std::u32string c_out;
  c_out.reserve(b.size());
  for (size_t i = 0; i < b.size(); ++i) {
    if (b[i] == 0x1B && i + 1 < b.size() && b[i + 1] == '[') {
      size_t j = i + 2;
      while (j < b.size() && (b[j] == ';' || is_decimal_digit(b[j]))) ++j;
      if (j < b.size() && ((b[j] >= 'a' && b[j] <= 'z') || (b[j] >= 'A' && b[j] <= 'Z'))) {
        i = j;
        continue;
      }
    }
    c_out.push_back(b[i]);
  }
  // remove_control_chars
  c_out.erase(std::remove_if(c_out.begin(), c_out.end(), is_removed_control), c_out.end());
  return nfc(c_out);
}

std::u32string fix_segment(std::u32string_view segment, bool unescape) {
  std::u32string text(segment);
  while (true) {
    std::u32string next = unescape ? unescape_html(text) : text;
    next = fix_encoding(next);
    next = fix_pass(next);
    if (next == text) return text;
    text = std::move(next);
  }
}

}  // namespace

std::u32string unescape_html(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] != '&') {
      out.push_back(text[i++]);
      continue;
    }
    // HTML_ENTITY_RE: &#?[0-9A-Za-z]{1,24};
    size_t j = i + 1;
    const bool numeric = j < text.size() && text[j] == '#';
    if (numeric) ++j;
    const size_t body = j;
    while (j < text.size() && j - body < 24 && is_ascii_alnum(text[j])) ++j;
    if (j == body || j >= text.size() || text[j] != ';') {
      out.push_back(text[i++]);
      continue;
    }
    const std::string name = u32_to_utf8(text.substr(i, j + 1 - i));
    if (const char* replacement = find_entity(name)) {
      out += utf8_to_u32(replacement);
    } else if (!numeric || !unescape_numeric(text.substr(body, j - body), out)) {
      out.append(text.substr(i, j + 1 - i));
    }
    i = j + 1;
  }
  return out;
}

std::u32string fix_text(std::u32string_view text) {
  // ftfy's max_decode_length: a line longer than this is fixed in pieces of this size.
  constexpr size_t kMaxSegment = 1000000;
  std::u32string out;
  out.reserve(text.size());
  bool unescape = true;  // unescape_html="auto": off from the first line holding '<' onwards
  size_t pos = 0;
  while (pos < text.size()) {
    size_t brk = text.find(U'\n', pos);
    brk = brk == std::u32string_view::npos ? text.size() : brk + 1;
    brk = std::min(brk, pos + kMaxSegment);
    const std::u32string_view segment = text.substr(pos, brk - pos);
    if (unescape && segment.find(U'<') != std::u32string_view::npos) unescape = false;
    out += fix_segment(segment, unescape);
    pos = brk;
  }
  return out;
}

}  // namespace sdtrain::clip_text

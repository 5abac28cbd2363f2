#include "plugins/models/stable_diffusion/tokenizer/clip_tokenizer.h"

#include <stdexcept>
#include <string_view>

#include "plugins/models/stable_diffusion/tokenizer/clip_bpe.h"
#include "plugins/models/stable_diffusion/tokenizer/merges_source.h"
#include "plugins/models/stable_diffusion/tokenizer/text_fixer.h"
#include "plugins/models/stable_diffusion/tokenizer/unicode_text.h"

namespace sdtrain {
namespace {

using clip_text::ClipBpe;

constexpr std::u32string_view kSpecials[] = {U"<|startoftext|>", U"<|endoftext|>"};
constexpr std::string_view kSpecialsUtf8[] = {"<|startoftext|>", "<|endoftext|>"};
constexpr char32_t kYpogegrammeni = 0x345;  // matched by no branch of the reference regex

std::shared_ptr<const ClipBpe> embedded_bpe() {
  // Built once per process; every default-constructed tokenizer shares it.
  static const std::shared_ptr<const ClipBpe> bpe = std::make_shared<const ClipBpe>(
      clip_text::gunzip(clip_text::embedded_merges_gz(), "<embedded bpe_simple_vocab_16e6.txt.gz>"),
      "<embedded bpe_simple_vocab_16e6.txt.gz>");
  return bpe;
}

bool starts_with(std::u32string_view text, size_t pos, std::u32string_view prefix) {
  return text.size() - pos >= prefix.size() && text.compare(pos, prefix.size(), prefix) == 0;
}

// whitespace_clean(fix_text(text)).lower(): regex \s+ → " ", str.strip(), str.lower().
std::u32string clean(std::u32string_view piece) {
  const std::u32string fixed = clip_text::fix_text(piece);
  std::u32string collapsed;
  collapsed.reserve(fixed.size());
  for (size_t i = 0; i < fixed.size();) {
    if (clip_text::is_regex_space(fixed[i])) {
      collapsed.push_back(U' ');
      while (i < fixed.size() && clip_text::is_regex_space(fixed[i])) ++i;
    } else {
      collapsed.push_back(fixed[i++]);
    }
  }
  size_t begin = 0, end = collapsed.size();
  while (begin < end && clip_text::is_python_space(collapsed[begin])) ++begin;
  while (end > begin && clip_text::is_python_space(collapsed[end - 1])) --end;
  return clip_text::to_lower(std::u32string_view(collapsed).substr(begin, end - begin));
}

bool is_contraction_letter(char32_t c) { return c == U's' || c == 0x17F; }  // 's matches ſ too

// Length of the contraction at text[pos] ('s 't 're 've 'm 'll 'd, case-insensitive), or 0.
size_t contraction_length(std::u32string_view text, size_t pos) {
  if (text[pos] != U'\'' || pos + 1 >= text.size()) return 0;
  const char32_t a = text[pos + 1];
  if (is_contraction_letter(a) || a == U't' || a == U'm' || a == U'd') return 2;
  if (pos + 2 >= text.size()) return 0;
  const char32_t b = text[pos + 2];
  if ((a == U'r' && b == U'e') || (a == U'v' && b == U'e') || (a == U'l' && b == U'l')) return 3;
  return 0;
}

bool is_other(char32_t c) {  // [^\s\p{L}\p{N}] under IGNORECASE
  return c != kYpogegrammeni && !clip_text::is_regex_space(c) && !clip_text::is_letter(c) &&
         !clip_text::is_number(c);
}

// re.findall(pattern, text): the pre-tokenizer's matches, left to right.
template <typename Fn>
void for_each_match(std::u32string_view text, Fn&& fn) {
  size_t i = 0;
  while (i < text.size()) {
    size_t len = 0;
    for (auto special : kSpecials) {
      if (starts_with(text, i, special)) {
        len = special.size();
        break;
      }
    }
    if (len == 0) len = contraction_length(text, i);
    if (len == 0) {
      const char32_t c = text[i];
      size_t j = i;
      if (clip_text::is_letter(c)) {
        while (j < text.size() && clip_text::is_letter(text[j])) ++j;
      } else if (clip_text::is_number(c)) {
        j = i + 1;
      } else if (is_other(c)) {
        while (j < text.size() && is_other(text[j])) ++j;
      }
      len = j - i;
    }
    if (len == 0) {
      ++i;  // whitespace (or a character no branch matches)
      continue;
    }
    fn(text.substr(i, len));
    i += len;
  }
}

void encode_piece(const ClipBpe& bpe, std::u32string_view piece, std::vector<int64_t>& out) {
  const std::u32string text = clean(piece);
  std::string word;
  for_each_match(text, [&](std::u32string_view match) {
    word.clear();
    for (char32_t c : match) clip_text::append_utf8(c, word);
    bpe.encode_word(word, out);
  });
}

}  // namespace

ClipTokenizer::ClipTokenizer() : bpe_(embedded_bpe()) {}

ClipTokenizer::ClipTokenizer(const std::string& merges_path)
    : bpe_(std::make_shared<const ClipBpe>(clip_text::read_merges_file(merges_path), merges_path)) {}

std::vector<int64_t> ClipTokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids;
  const std::u32string u = clip_text::utf8_to_u32(text);
  // The reference first splits the raw text on the special tokens (its added-tokens trie), then
  // cleans and tokenizes each remaining piece on its own.
  size_t start = 0, i = 0;
  while (i < u.size()) {
    int special = -1;
    if (u[i] == U'<') {
      for (int s = 0; s < 2; ++s) {
        if (starts_with(u, i, kSpecials[s])) special = s;
      }
    }
    if (special < 0) {
      ++i;
      continue;
    }
    if (i > start) encode_piece(*bpe_, std::u32string_view(u).substr(start, i - start), ids);
    ids.push_back(special == 0 ? bpe_->bos_id() : bpe_->eos_id());
    i += kSpecials[special].size();
    start = i;
  }
  if (u.size() > start) encode_piece(*bpe_, std::u32string_view(u).substr(start), ids);
  return ids;
}

torch::Tensor ClipTokenizer::tokenize(const std::vector<std::string>& texts,
                                      int64_t context_length) const {
  if (context_length < 2) {
    throw std::invalid_argument("ClipTokenizer::tokenize: context_length must be >= 2, got " +
                                std::to_string(context_length));
  }
  const auto n = static_cast<int64_t>(texts.size());
  torch::Tensor out = torch::full({n, context_length}, pad_id(), torch::kInt64);
  auto acc = out.accessor<int64_t, 2>();
  for (int64_t r = 0; r < n; ++r) {
    const std::vector<int64_t> ids = encode(texts[static_cast<size_t>(r)]);
    const auto kept = std::min<int64_t>(static_cast<int64_t>(ids.size()), context_length - 2);
    acc[r][0] = bos_id();
    for (int64_t k = 0; k < kept; ++k) acc[r][k + 1] = ids[static_cast<size_t>(k)];
    acc[r][kept + 1] = eos_id();
  }
  return out;
}

std::string ClipTokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  std::string bytes;
  for (int64_t id : ids) {
    if (id < 0 || id >= vocab_size()) {
      throw std::out_of_range("ClipTokenizer::decode: id " + std::to_string(id) +
                              " outside the vocabulary [0, " + std::to_string(vocab_size()) + ")");
    }
    if (id == bos_id() || id == eos_id()) {
      if (!skip_special_tokens) bytes += kSpecialsUtf8[id == bos_id() ? 0 : 1];
      continue;
    }
    for (char32_t symbol : clip_text::utf8_to_u32(bpe_->id_to_token(id))) {
      // "</w>" is made of printable ASCII symbols; they stand for themselves.
      const int b = bpe_->byte_of_symbol(symbol);
      bytes.push_back(static_cast<char>(b >= 0 ? b : static_cast<int>(symbol)));
    }
  }
  // Invalid UTF-8 → U+FFFD, then "</w>" → " " and strip.
  const std::u32string text = clip_text::utf8_to_u32(bytes);
  std::u32string spaced;
  spaced.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (starts_with(text, i, U"</w>")) {
      spaced.push_back(U' ');
      i += 4;
    } else {
      spaced.push_back(text[i++]);
    }
  }
  size_t begin = 0, end = spaced.size();
  while (begin < end && clip_text::is_python_space(spaced[begin])) ++begin;
  while (end > begin && clip_text::is_python_space(spaced[end - 1])) --end;
  return clip_text::u32_to_utf8(std::u32string_view(spaced).substr(begin, end - begin));
}

int64_t ClipTokenizer::bos_id() const { return bpe_->bos_id(); }
int64_t ClipTokenizer::eos_id() const { return bpe_->eos_id(); }
int64_t ClipTokenizer::pad_id() const { return pad_id_ >= 0 ? pad_id_ : bpe_->eos_id(); }

ClipTokenizer ClipTokenizer::with_pad_token(const std::string& token) const {
  int64_t id = token == "<|startoftext|>" ? bos_id() : token == "<|endoftext|>" ? eos_id() : token_to_id(token);
  if (id < 0) throw std::invalid_argument("pad token '" + token + "' is not in the CLIP vocabulary");
  ClipTokenizer copy = *this;
  copy.pad_id_ = id;
  return copy;
}
int64_t ClipTokenizer::vocab_size() const { return bpe_->vocab_size(); }
int64_t ClipTokenizer::token_to_id(const std::string& token) const { return bpe_->token_to_id(token); }
const std::string& ClipTokenizer::id_to_token(int64_t id) const { return bpe_->id_to_token(id); }

}  // namespace sdtrain

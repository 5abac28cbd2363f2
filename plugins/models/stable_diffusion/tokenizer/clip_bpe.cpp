#include "plugins/models/stable_diffusion/tokenizer/clip_bpe.h"

#include <limits>

#include "plugins/models/stable_diffusion/tokenizer/unicode_text.h"
#include "sdtrain/errors.h"

namespace sdtrain::clip_text {
namespace {

constexpr std::string_view kStartOfText = "<|startoftext|>";
constexpr std::string_view kEndOfText = "<|endoftext|>";

// OpenAI CLIP's bytes_to_unicode(): printable bytes map to themselves, the rest to U+0100 + n in
// byte order. Returns the bytes in dictionary order and their symbols.
void bytes_to_unicode(std::vector<int>& bytes, std::vector<char32_t>& symbols) {
  for (int b = '!'; b <= '~'; ++b) bytes.push_back(b);
  for (int b = 0xA1; b <= 0xAC; ++b) bytes.push_back(b);
  for (int b = 0xAE; b <= 0xFF; ++b) bytes.push_back(b);
  for (int b : bytes) symbols.push_back(static_cast<char32_t>(b));
  std::vector<bool> seen(256, false);
  for (int b : bytes) seen[static_cast<size_t>(b)] = true;
  char32_t n = 0;
  for (int b = 0; b < 256; ++b) {
    if (!seen[static_cast<size_t>(b)]) {
      bytes.push_back(b);
      symbols.push_back(256 + n++);
    }
  }
}

}  // namespace

ClipBpe::ClipBpe(std::string_view merges_text, const std::string& source) {
  std::vector<int> bytes;
  std::vector<char32_t> symbols;
  bytes_to_unicode(bytes, symbols);
  std::vector<std::string> vocab;
  vocab.reserve(49408);
  for (char32_t s : symbols) vocab.push_back(u32_to_utf8(std::u32string(1, s)));
  for (size_t i = 0; i < 256; ++i) vocab.push_back(vocab[i] + "</w>");

  // Lines 1 .. kClipMergeCount of the file (after text.split('\n')), each "left right".
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(kClipMergeCount);
  size_t pos = 0;
  int64_t line_no = 0;
  while (pos <= merges_text.size() && static_cast<int64_t>(merges.size()) < kClipMergeCount) {
    size_t end = merges_text.find('\n', pos);
    if (end == std::string_view::npos) end = merges_text.size();
    std::string_view line = merges_text.substr(pos, end - pos);
    pos = end + 1;
    if (line_no++ == 0) continue;  // "#version: ..." header
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const size_t space = line.find(' ');
    if (space == std::string_view::npos || space == 0 || space + 1 >= line.size() ||
        line.find(' ', space + 1) != std::string_view::npos) {
      throw FormatError("CLIP merges file " + source + ": line " + std::to_string(line_no) +
                        " is not two space-separated symbols: '" + std::string(line) + "'");
    }
    merges.emplace_back(std::string(line.substr(0, space)), std::string(line.substr(space + 1)));
  }
  if (static_cast<int64_t>(merges.size()) < kClipMergeCount) {
    throw FormatError("CLIP merges file " + source + ": expected at least " +
                      std::to_string(kClipMergeCount) + " merges after the header line, found " +
                      std::to_string(merges.size()));
  }
  for (const auto& m : merges) vocab.push_back(m.first + m.second);
  vocab.emplace_back(kStartOfText);
  vocab.emplace_back(kEndOfText);

  id_to_token_ = vocab;
  token_to_id_.reserve(vocab.size());
  // A repeated string takes its last id, as dict(zip(vocab, range(len(vocab)))) does.
  for (size_t i = 0; i < vocab.size(); ++i) token_to_id_[vocab[i]] = static_cast<int32_t>(i);
  for (size_t i = 0; i < 256; ++i) {
    byte_id_[bytes[i]] = token_to_id_.at(vocab[i]);
    symbol_to_byte_[symbols[i]] = bytes[i];
  }
  merges_.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const auto a = token_to_id_.find(merges[r].first);
    const auto b = token_to_id_.find(merges[r].second);
    const auto m = token_to_id_.find(merges[r].first + merges[r].second);
    if (a == token_to_id_.end() || b == token_to_id_.end()) continue;  // can never apply
    // A repeated pair takes its last rank, as dict(zip(merges, range(...))) does.
    merges_[pair_key(a->second, b->second)] = Merge{static_cast<int32_t>(r), m->second};
  }
  bos_id_ = token_to_id_.at(std::string(kStartOfText));
  eos_id_ = token_to_id_.at(std::string(kEndOfText));
}

int64_t ClipBpe::token_to_id(const std::string& token) const {
  const auto it = token_to_id_.find(token);
  return it == token_to_id_.end() ? -1 : it->second;
}

int ClipBpe::byte_of_symbol(char32_t symbol) const {
  const auto it = symbol_to_byte_.find(symbol);
  return it == symbol_to_byte_.end() ? -1 : it->second;
}

std::vector<int32_t> ClipBpe::bpe(std::string_view word) const {
  std::vector<int32_t> symbols;
  symbols.reserve(word.size());
  for (size_t i = 0; i < word.size(); ++i) {
    const auto b = static_cast<unsigned char>(word[i]);
    symbols.push_back(byte_id_[b] + (i + 1 == word.size() ? 256 : 0));  // last symbol + "</w>"
  }
  // Repeatedly merge the adjacent pair of lowest rank, every non-overlapping occurrence from
  // left to right, until no adjacent pair is a merge (simple_tokenizer.py's bpe()).
  std::vector<int32_t> next;
  while (symbols.size() > 1) {
    int32_t best_rank = std::numeric_limits<int32_t>::max();
    const Merge* best = nullptr;
    int32_t first = 0, second = 0;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      const auto it = merges_.find(pair_key(symbols[i], symbols[i + 1]));
      if (it != merges_.end() && it->second.rank < best_rank) {
        best_rank = it->second.rank;
        best = &it->second;
        first = symbols[i];
        second = symbols[i + 1];
      }
    }
    if (best == nullptr) break;
    next.clear();
    for (size_t i = 0; i < symbols.size();) {
      if (i + 1 < symbols.size() && symbols[i] == first && symbols[i + 1] == second) {
        next.push_back(best->merged_id);
        i += 2;
      } else {
        next.push_back(symbols[i++]);
      }
    }
    symbols.swap(next);
  }
  return symbols;
}

void ClipBpe::encode_word(std::string_view word, std::vector<int64_t>& out) const {
  if (word.empty()) return;
  if (word == kStartOfText) {
    out.push_back(bos_id_);
    return;
  }
  if (word == kEndOfText) {
    out.push_back(eos_id_);
    return;
  }
  const std::string key(word);
  {
    std::shared_lock<std::shared_mutex> lock(cache_mutex_);
    const auto it = cache_.find(key);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids = bpe(word);
  out.insert(out.end(), ids.begin(), ids.end());
  std::unique_lock<std::shared_mutex> lock(cache_mutex_);
  if (cache_.size() >= kMaxCacheEntries) cache_.clear();
  cache_.emplace(key, std::move(ids));
}

}  // namespace sdtrain::clip_text

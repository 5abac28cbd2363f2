#include "plugins/models/stable_diffusion/tokenizer/clip_bpe.h"

#include <functional>
#include <queue>

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
  // simple_tokenizer.py's bpe(): repeatedly take the adjacent pair of lowest rank and merge every
  // non-overlapping occurrence of it, left to right, until no adjacent pair is a merge. Done
  // literally that costs a scan of the word per merge, quadratic in its length (a 40,000-letter
  // caption word took 23 s under the fuzzer), so the symbols form a linked list and the candidate
  // pairs a min-heap keyed by (rank, position): the same merges in the same order, n log n.
  // One rank names one pair and a merge never recreates the pair it merged, so popping every
  // entry of the lowest rank at once, in position order, is exactly one round of the original.
  const auto n = static_cast<int32_t>(word.size());
  std::vector<int32_t> symbol(n);  // -1 once merged into its left neighbour
  std::vector<int32_t> next(n);    // index of the next live symbol, or n
  std::vector<int32_t> prev(n);    // index of the previous live symbol, or -1
  for (int32_t i = 0; i < n; ++i) {
    const auto b = static_cast<unsigned char>(word[i]);
    symbol[i] = byte_id_[b] + (i + 1 == n ? 256 : 0);  // last symbol + "</w>"
    next[i] = i + 1;
    prev[i] = i - 1;
  }
  const auto merge_at = [&](int32_t left) -> const Merge* {
    if (left < 0 || next[left] >= n) return nullptr;
    const auto it = merges_.find(pair_key(symbol[left], symbol[next[left]]));
    return it == merges_.end() ? nullptr : &it->second;
  };
  // (rank << 32 | position), smallest first; entries whose pair has changed since are skipped.
  std::priority_queue<uint64_t, std::vector<uint64_t>, std::greater<>> candidates;
  const auto push = [&](int32_t left) {
    if (const Merge* m = merge_at(left)) {
      candidates.push(static_cast<uint64_t>(m->rank) << 32 | static_cast<uint32_t>(left));
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  std::vector<int32_t> round;
  while (!candidates.empty()) {
    const auto rank = static_cast<int32_t>(candidates.top() >> 32);
    round.clear();
    while (!candidates.empty() && static_cast<int32_t>(candidates.top() >> 32) == rank) {
      round.push_back(static_cast<int32_t>(candidates.top() & 0xffffffffu));
      candidates.pop();
    }
    for (int32_t left : round) {
      const Merge* m = symbol[left] < 0 ? nullptr : merge_at(left);
      if (m == nullptr || m->rank != rank) continue;  // merged away, or now another pair
      const int32_t right = next[left];
      symbol[left] = m->merged_id;
      symbol[right] = -1;
      next[left] = next[right];
      if (next[right] < n) prev[next[right]] = left;
      push(prev[left]);
      push(left);
    }
  }
  std::vector<int32_t> ids;
  for (int32_t i = 0; i < n; i = next[i]) ids.push_back(symbol[i]);
  return ids;
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

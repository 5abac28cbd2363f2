#pragma once
/// CLIP's byte-level BPE model: the vocabulary derived from the merges list exactly as OpenAI's
/// simple_tokenizer.py does, and the merge loop over one pre-tokenized word. Internal to
/// ClipTokenizer; exposed for tests.
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sdtrain::clip_text {

/// Number of merges CLIP uses: merges-file lines 1 .. 49152-256-2 (line 0 is a version header).
constexpr int64_t kClipMergeCount = 49152 - 256 - 2;

class ClipBpe {
 public:
  /// Builds the vocabulary from the merges file's text (already decompressed): 256 byte symbols
  /// in bytes_to_unicode order, the same with "</w>", one entry per merge, then
  /// "<|startoftext|>" and "<|endoftext|>" (49408 entries for CLIP's file).
  /// Throws FormatError (naming `source`) when the file has fewer than kClipMergeCount merges or a
  /// malformed line.
  ClipBpe(std::string_view merges_text, const std::string& source);

  /// Appends the ids of one pre-tokenized word (raw UTF-8 bytes, not yet byte-encoded). The two
  /// special-token strings map to their ids. Thread-safe (results are cached under a lock).
  void encode_word(std::string_view word, std::vector<int64_t>& out) const;

  /// Vocabulary size (49408 for CLIP).
  int64_t vocab_size() const { return static_cast<int64_t>(id_to_token_.size()); }
  /// Id of a vocabulary string (byte-encoded form, e.g. "hello</w>"), or -1.
  int64_t token_to_id(const std::string& token) const;
  /// Byte-encoded string of an id. Throws std::out_of_range for an id outside the vocabulary.
  const std::string& id_to_token(int64_t id) const { return id_to_token_.at(static_cast<size_t>(id)); }
  /// The raw byte that a byte-encoded symbol (one code point, UTF-8) stands for, or -1.
  int byte_of_symbol(char32_t symbol) const;

  int64_t bos_id() const { return bos_id_; }
  int64_t eos_id() const { return eos_id_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  std::vector<int32_t> bpe(std::string_view word) const;

  std::vector<std::string> id_to_token_;
  std::unordered_map<std::string, int32_t> token_to_id_;
  std::unordered_map<uint64_t, Merge> merges_;
  int32_t byte_id_[256] = {};
  std::unordered_map<char32_t, int> symbol_to_byte_;
  int64_t bos_id_ = -1;
  int64_t eos_id_ = -1;

  static constexpr size_t kMaxCacheEntries = 1 << 17;
  mutable std::shared_mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace sdtrain::clip_text

#pragma once
/// The CLIP BPE tokenizer of Stable Diffusion v1, token for token equal to transformers'
/// CLIPTokenizer (the Python implementation, with ftfy installed) built from OpenAI's
/// bpe_simple_vocab_16e6 merges, which is what the SD v1 text encoder was trained with.
///
/// Pipeline per text: split on the literal special tokens "<|startoftext|>"/"<|endoftext|>";
/// for each other piece ftfy.fix_text (see text_fixer.h for the one step not reproduced),
/// whitespace runs to one space and strip, lower-case (Python str.lower), the pre-tokenizer
/// regex <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
/// (case-insensitive, as the reference compiles it), then byte-level BPE per match.
///
/// The merges file ships inside the library (no file or network access at run time); a
/// constructor also takes an explicit path. Instances are cheap to copy (shared, immutable
/// vocabulary) and every method is safe to call from several threads at once.
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sdtrain {

namespace clip_text {
class ClipBpe;
}

class ClipTokenizer {
 public:
  /// SD v1's text context: <|startoftext|> + 75 tokens + <|endoftext|>.
  static constexpr int64_t kContextLength = 77;

  /// The tokenizer over the merges embedded in the library (OpenAI CLIP's
  /// bpe_simple_vocab_16e6.txt.gz, MIT licence; see tokenizer/data/LICENSE.open_clip).
  ClipTokenizer();

  /// The tokenizer over a merges file: gzip'ed (as CLIP ships it) or plain text, line 0 a header
  /// and at least 48894 "left right" merge lines after it. Throws FormatError naming the path if
  /// the file cannot be read, decompressed or parsed.
  explicit ClipTokenizer(const std::string& merges_path);

  /// Token ids of `text` (UTF-8; invalid bytes read as U+FFFD) without special tokens added and
  /// without truncation. Literal "<|startoftext|>"/"<|endoftext|>" in the text become the
  /// special ids, as in the reference.
  std::vector<int64_t> encode(const std::string& text) const;

  /// The text encoder's input: int64 tensor [texts.size(), context_length], each row
  /// bos + encode(text) truncated to context_length - 2 + eos, then padded with pad_id()
  /// (transformers: padding="max_length", truncation=True, max_length=context_length).
  /// Throws std::invalid_argument if context_length < 2.
  torch::Tensor tokenize(const std::vector<std::string>& texts,
                         int64_t context_length = kContextLength) const;

  /// Text of token ids: byte-level decoding (invalid UTF-8 → U+FFFD), "</w>" → " ", stripped of
  /// surrounding whitespace. Special tokens are dropped when skip_special_tokens, else written as
  /// "<|startoftext|>"/"<|endoftext|>". Throws std::out_of_range for an id outside the vocabulary.
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = false) const;

  /// Id of "<|startoftext|>" (49406).
  int64_t bos_id() const;
  /// Id of "<|endoftext|>" (49407).
  int64_t eos_id() const;
  /// Padding id: "<|endoftext|>" (49407), as SD v1's tokenizer config sets pad_token, unless
  /// with_pad_token chose another.
  int64_t pad_id() const;
  /// A copy that pads with `token` (a vocabulary entry in its byte-encoded form, or one of the
  /// special tokens): SD 2.x's and SDXL's OpenCLIP tokenizers pad with "!" (id 0). Throws
  /// std::invalid_argument naming the token when the vocabulary lacks it.
  ClipTokenizer with_pad_token(const std::string& token) const;
  /// Vocabulary size (49408).
  int64_t vocab_size() const;
  /// Id of a vocabulary entry in its byte-encoded form (e.g. "cat</w>"), or -1 if absent.
  int64_t token_to_id(const std::string& token) const;
  /// Vocabulary entry of an id (byte-encoded form). Throws std::out_of_range.
  const std::string& id_to_token(int64_t id) const;

 private:
  std::shared_ptr<const clip_text::ClipBpe> bpe_;
  int64_t pad_id_ = -1;  ///< -1: eos
};

}  // namespace sdtrain

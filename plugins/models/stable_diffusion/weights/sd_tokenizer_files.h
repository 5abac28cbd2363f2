#pragma once
/// The CLIP ViT-L/14 tokenizer files of a diffusers folder (tokenizer/vocab.json, merges.txt,
/// special_tokens_map.json, tokenizer_config.json), derived from the BPE merges file embedded in
/// libsdtrain_plugins (the same vocabulary OpenAI's simple_tokenizer builds: 49408 entries).
#include <string>

namespace sdtrain {

/// Vocabulary size of the files write_clip_tokenizer_files writes (49408).
long clip_tokenizer_vocab_size();

/// Writes the four files into the existing directory `dir`. Throws FormatError on I/O failure.
void write_clip_tokenizer_files(const std::string& dir);

}  // namespace sdtrain

#pragma once
/// The CLIP ViT-L/14 tokenizer files of a diffusers folder (tokenizer/vocab.json, merges.txt,
/// special_tokens_map.json, tokenizer_config.json), derived from the BPE merges file embedded in
/// libsdtrain_plugins (the same vocabulary OpenAI's simple_tokenizer builds: 49408 entries).
#include <string>

#include "plugins/models/stable_diffusion/tokenizer/clip_tokenizer.h"
#include "plugins/models/stable_diffusion/weights/sd_weights.h"

namespace sdtrain {

/// Vocabulary size of the files write_clip_tokenizer_files writes (49408).
long clip_tokenizer_vocab_size();

/// Writes the four files into the existing directory `dir`, padding with `pad_token` (which must be
/// in the vocabulary). Throws FormatError on I/O failure.
void write_clip_tokenizer_files(const std::string& dir, const std::string& pad_token = "<|endoftext|>");

/// The token a family's pipelines pad prompts with when no tokenizer folder says: "!" (id 0) for
/// an OpenCLIP text encoder (SD 2.x; open_clip's tokenizer pads with 0), "<|endoftext|>" for
/// OpenAI's CLIP (SD v1).
std::string default_pad_token(const SdWeights& weights);

/// The tokenizer a diffusers tokenizer folder describes: its merges.txt (CLIP's built-in merges
/// when `dir` is "" or has none) and the pad_token of its tokenizer_config.json (else
/// special_tokens_map.json; a string or {"content": ...}): "<|endoftext|>" for SD v1, "!" for SD
/// 2.x and SDXL's second tokenizer. FormatError naming the file for an unreadable config or a pad
/// token outside the vocabulary.
ClipTokenizer load_folder_tokenizer(const std::string& dir);

/// The tokenizer of loaded weights: load_folder_tokenizer(weights.tokenizer_dir) when the source
/// had a tokenizer folder, else CLIP's built-in one padding with default_pad_token(weights).
ClipTokenizer weights_tokenizer(const SdWeights& weights);
/// SDXL's second tokenizer: load_folder_tokenizer(weights.tokenizer_2_dir) when the source had
/// one, else CLIP's built-in one padding with "!" as OpenCLIP's tokenizer does.
ClipTokenizer weights_tokenizer_2(const SdWeights& weights);

}  // namespace sdtrain

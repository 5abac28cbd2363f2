#include "plugins/models/stable_diffusion/weights/sd_tokenizer_files.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "framework/io/atomic_file.h"
#include "framework/util/file_util.h"
#include "plugins/models/stable_diffusion/tokenizer/clip_bpe.h"
#include "plugins/models/stable_diffusion/tokenizer/merges_source.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

void write(const std::filesystem::path& path, const std::string& text) { write_file_atomic(path.string(), text); }

}  // namespace

long clip_tokenizer_vocab_size() { return 49408; }

void write_clip_tokenizer_files(const std::string& dir, const std::string& pad_token) {
  const std::string merges_text = clip_text::gunzip(clip_text::embedded_merges_gz(), "embedded CLIP merges");
  const clip_text::ClipBpe bpe(merges_text, "embedded CLIP merges");
  std::string vocab = "{";
  for (int64_t id = 0; id < bpe.vocab_size(); ++id) {
    vocab += (id ? "," : "") + nlohmann::json(bpe.id_to_token(id)).dump() + ":" + std::to_string(id);
  }
  vocab += "}";
  write(std::filesystem::path(dir) / "vocab.json", vocab);
  // merges.txt as transformers ships it: the version header, then the merges CLIP uses.
  std::string merges = "#version: 0.2\n";
  std::size_t start = merges_text.find('\n') + 1;
  for (int64_t i = 0; i < clip_text::kClipMergeCount && start < merges_text.size(); ++i) {
    std::size_t end = merges_text.find('\n', start);
    if (end == std::string::npos) end = merges_text.size();
    merges += merges_text.substr(start, end - start) + "\n";
    start = end + 1;
  }
  write(std::filesystem::path(dir) / "merges.txt", merges);
  const nlohmann::ordered_json special = {{"bos_token", "<|startoftext|>"},
                                          {"eos_token", "<|endoftext|>"},
                                          {"pad_token", pad_token},
                                          {"unk_token", "<|endoftext|>"}};
  write(std::filesystem::path(dir) / "special_tokens_map.json", special.dump(2) + "\n");
  nlohmann::ordered_json config = special;
  config["add_prefix_space"] = false;
  config["do_lower_case"] = true;
  config["errors"] = "replace";
  config["model_max_length"] = 77;
  config["tokenizer_class"] = "CLIPTokenizer";
  write(std::filesystem::path(dir) / "tokenizer_config.json", config.dump(2) + "\n");
}

std::string default_pad_token(const SdWeights& weights) {
  return text_encoder_is_open_clip(weights) ? "!" : "<|endoftext|>";
}

ClipTokenizer weights_tokenizer(const SdWeights& weights) {
  if (!weights.tokenizer_dir.empty()) return load_folder_tokenizer(weights.tokenizer_dir);
  return ClipTokenizer().with_pad_token(default_pad_token(weights));
}

ClipTokenizer weights_tokenizer_2(const SdWeights& weights) {
  if (!weights.tokenizer_2_dir.empty()) return load_folder_tokenizer(weights.tokenizer_2_dir);
  return ClipTokenizer().with_pad_token("!");
}

ClipTokenizer load_folder_tokenizer(const std::string& dir) {
  namespace fs = std::filesystem;
  if (dir.empty()) return ClipTokenizer();
  const fs::path merges = fs::path(dir) / "merges.txt";
  ClipTokenizer tokenizer = fs::exists(merges) ? ClipTokenizer(merges.string()) : ClipTokenizer();
  for (const char* name : {"tokenizer_config.json", "special_tokens_map.json"}) {
    const fs::path path = fs::path(dir) / name;
    if (!fs::exists(path)) continue;
    nlohmann::json config;
    try {
      config = nlohmann::json::parse(read_file<FormatError>(path.string()));
    } catch (const nlohmann::json::exception& error) {
      throw FormatError(path.string() + ": not valid JSON: " + error.what());
    }
    const auto pad = config.find("pad_token");
    if (pad == config.end() || pad->is_null()) continue;
    const nlohmann::json& token = pad->is_object() ? pad->value("content", nlohmann::json()) : *pad;
    if (!token.is_string()) throw FormatError(path.string() + ": pad_token: expected a string, got " + pad->dump());
    try {
      return tokenizer.with_pad_token(token.get<std::string>());
    } catch (const std::invalid_argument& error) {
      throw FormatError(path.string() + ": pad_token: " + error.what());
    }
  }
  return tokenizer;
}

}  // namespace sdtrain

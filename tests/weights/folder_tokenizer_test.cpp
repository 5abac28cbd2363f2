// The tokenizer of a diffusers folder: its pad token (SD v1 pads with <|endoftext|>, SD 2.x and
// SDXL's second tokenizer with "!", id 0), read from tokenizer_config.json or
// special_tokens_map.json, and errors that name the file.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "plugins/models/stable_diffusion/weights/sd_tokenizer_files.h"
#include "sdtrain/errors.h"
#include "tests/common/test_env.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

fs::path folder_with(const std::string& name, const std::string& file, const std::string& text) {
  const fs::path dir = test::scratch_dir() / name;
  fs::create_directories(dir);
  std::ofstream(dir / file) << text;
  return dir;
}

TEST(FolderTokenizer, PadsWithTheFoldersPadToken) {
  const ClipTokenizer v1 = load_folder_tokenizer("");
  EXPECT_EQ(v1.pad_id(), v1.eos_id());
  const auto sd2 = load_folder_tokenizer(folder_with("sd2", "tokenizer_config.json", R"({"pad_token": "!"})"));
  EXPECT_EQ(sd2.pad_id(), 0);
  const auto ids = sd2.tokenize({"a cat"});
  EXPECT_EQ(ids[0][3].item<int64_t>(), sd2.eos_id());  // bos, a, cat, eos, then padding
  EXPECT_EQ(ids[0][4].item<int64_t>(), 0);
  EXPECT_EQ(ids[0][76].item<int64_t>(), 0);
  // transformers' older special_tokens_map.json form, an AddedToken object.
  const auto object = load_folder_tokenizer(
      folder_with("object", "special_tokens_map.json", R"({"pad_token": {"content": "<|endoftext|>"}})"));
  EXPECT_EQ(object.pad_id(), object.eos_id());
}

TEST(FolderTokenizer, ABadPadTokenIsAnErrorNamingTheFile) {
  const fs::path unknown = folder_with("unknown", "tokenizer_config.json", R"({"pad_token": "<pad>"})");
  try {
    load_folder_tokenizer(unknown.string());
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer_config.json: pad_token: pad token '<pad>'"), std::string::npos)
        << e.what();
  }
  const fs::path broken = folder_with("broken", "tokenizer_config.json", "{not json");
  EXPECT_THROW(load_folder_tokenizer(broken.string()), FormatError);
  const fs::path number = folder_with("number", "tokenizer_config.json", R"({"pad_token": 3})");
  EXPECT_THROW(load_folder_tokenizer(number.string()), FormatError);
}

}  // namespace
}  // namespace sdtrain

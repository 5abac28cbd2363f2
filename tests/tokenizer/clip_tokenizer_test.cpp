// ClipTokenizer against the reference ids of make_tokenizer_reference.py (transformers' Python
// CLIPTokenizer with ftfy, reproduced on the real ftfy/regex packages) on a generated corpus.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "plugins/models/stable_diffusion/tokenizer/clip_tokenizer.h"
#include "plugins/models/stable_diffusion/tokenizer/text_fixer.h"
#include "plugins/models/stable_diffusion/tokenizer/unicode_text.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

using Rows = std::vector<std::vector<int64_t>>;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string fixture_dir() { return env("SDTRAIN_FIXTURE_DIR") + "/clip_tokenizer_reference"; }

const nlohmann::json& corpus() {
  static const nlohmann::json* data = [] {
    const std::string path = fixture_dir() + "/corpus.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("missing fixture " + path + " (run ctest, which generates it)");
    auto* j = new nlohmann::json(nlohmann::json::parse(in));
    return j;
  }();
  return *data;
}

const ClipTokenizer& tokenizer() {
  static const ClipTokenizer tok;
  return tok;
}

std::string escaped(const std::string& s) {
  std::ostringstream out;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out << buf;
    } else {
      out << c;
    }
  }
  return out.str();
}

std::string row_string(const std::vector<int64_t>& row) {
  std::ostringstream out;
  for (size_t i = 0; i < row.size(); ++i) out << (i ? " " : "") << row[i];
  return out.str();
}

std::vector<int64_t> tensor_row(const torch::Tensor& t, int64_t r) {
  const auto row = t[r].contiguous();
  return std::vector<int64_t>(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + row.numel());
}

// Compares every row; prints the first mismatches with their text. Returns the mismatch count.
int compare_rows(const std::vector<std::string>& texts, const torch::Tensor& ours, const Rows& ref,
                 const std::vector<bool>& select, const char* what) {
  int mismatches = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    if (!select[i]) continue;
    const auto row = tensor_row(ours, static_cast<int64_t>(i));
    if (row != ref[i]) {
      if (++mismatches <= 10) {
        ADD_FAILURE() << what << " mismatch on text #" << i << " \"" << escaped(texts[i]) << "\"\n  ours: "
                      << row_string(row) << "\n  ref:  " << row_string(ref[i]);
      }
    }
  }
  return mismatches;
}

TEST(ClipTokenizer, VocabularyEqualsReferenceVocabJson) {
  std::ifstream in(fixture_dir() + "/vocab.json");
  ASSERT_TRUE(in) << "missing " << fixture_dir() << "/vocab.json";
  const auto vocab = nlohmann::json::parse(in);
  const auto& tok = tokenizer();
  ASSERT_EQ(tok.vocab_size(), 49408);
  ASSERT_EQ(static_cast<int64_t>(vocab.size()), tok.vocab_size());
  for (const auto& [token, id] : vocab.items()) {
    ASSERT_EQ(tok.token_to_id(token), id.get<int64_t>()) << token;
    ASSERT_EQ(tok.id_to_token(id.get<int64_t>()), token);
  }
  EXPECT_EQ(tok.bos_id(), 49406);
  EXPECT_EQ(tok.eos_id(), 49407);
  EXPECT_EQ(tok.pad_id(), 49407);
  EXPECT_EQ(tok.token_to_id("no such token"), -1);
}

TEST(ClipTokenizer, RowsEqualReferenceOnCorpus) {
  const auto& c = corpus();
  const auto texts = c["texts"].get<std::vector<std::string>>();
  const auto ref = c["slow"].get<Rows>();
  ASSERT_GE(texts.size(), 2000u);
  const torch::Tensor ours = tokenizer().tokenize(texts);
  ASSERT_EQ(ours.scalar_type(), torch::kInt64);
  ASSERT_EQ(ours.sizes(), (std::vector<int64_t>{static_cast<int64_t>(texts.size()), 77}));

  const std::vector<bool> all(texts.size(), true);
  const int bad = compare_rows(texts, ours, ref, all, "reference");
  EXPECT_EQ(bad, 0) << bad << " of " << texts.size() << " rows differ from the reference";
  std::cout << "[ClipTokenizer] " << texts.size() - static_cast<size_t>(bad) << "/" << texts.size()
            << " rows equal the reference (ftfy.fix_text with its defaults)\n";
}

// ftfy's mojibake repair (fix_encoding) on its own: the texts it changes must equal the reference
// too, and the corpus must take every branch of its plan, so a branch that is wrong cannot hide.
TEST(ClipTokenizer, MojibakeTextsEqualReferenceInEveryBranch) {
  const auto& c = corpus();
  const auto texts = c["texts"].get<std::vector<std::string>>();
  const auto ref = c["slow"].get<Rows>();
  const auto flagged = c["ftfy_encoding"].get<std::vector<bool>>();
  const auto steps = c["ftfy_steps"].get<std::vector<std::vector<std::string>>>();
  const torch::Tensor ours = tokenizer().tokenize(texts);
  const int bad = compare_rows(texts, ours, ref, flagged, "reference (texts ftfy.fix_encoding changes)");
  EXPECT_EQ(bad, 0);

  std::map<std::string, int> taken;
  for (const auto& per_text : steps) {
    for (const auto& step : per_text) ++taken[step];
  }
  const char* const kBranches[] = {
      "encode:latin-1", "encode:sloppy-windows-1252", "encode:sloppy-windows-1251",
      "encode:sloppy-windows-1250", "encode:sloppy-windows-1253", "encode:sloppy-windows-1254",
      "encode:sloppy-windows-1257", "encode:iso-8859-2", "encode:macroman", "encode:cp437",
      "decode:utf-8", "decode:utf-8-variants", "decode:windows-1252",
      "transcode:restore_byte_a0", "transcode:replace_lossy_sequences",
      "transcode:fix_c1_controls", "apply:decode_inconsistent_utf8"};
  for (const char* branch : kBranches) EXPECT_GT(taken[branch], 0) << "no corpus text takes " << branch;
  const auto n = static_cast<size_t>(std::count(flagged.begin(), flagged.end(), true));
  EXPECT_GT(n, 200u) << "too few texts that ftfy's mojibake repair changes";
  std::cout << "[ClipTokenizer] " << n - static_cast<size_t>(bad) << "/" << n
            << " texts repaired by ftfy.fix_encoding equal the reference\n";
}

// The text repair by itself, before lower-casing and BPE: clip_text::fix_text must return exactly
// what ftfy.fix_text (defaults, mojibake repair included) returns, on every corpus text.
TEST(ClipTokenizer, TextFixerEqualsFtfyFixText) {
  const auto& c = corpus();
  const auto texts = c["texts"].get<std::vector<std::string>>();
  const auto expected = c["ftfy_fixed"].get<std::vector<std::string>>();
  ASSERT_EQ(texts.size(), expected.size());
  int bad = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string ours = clip_text::u32_to_utf8(clip_text::fix_text(clip_text::utf8_to_u32(texts[i])));
    if (ours != expected[i] && ++bad <= 10) {
      ADD_FAILURE() << "fix_text mismatch on \"" << escaped(texts[i]) << "\"\n  ours: \"" << escaped(ours)
                    << "\"\n  ftfy: \"" << escaped(expected[i]) << "\"";
    }
  }
  EXPECT_EQ(bad, 0) << bad << " of " << texts.size() << " texts differ from ftfy.fix_text";
}

// Sanity check of the reference itself: on plain ASCII sentences, prompts and numbers (no ftfy
// repair, no Unicode case subtleties) transformers' tokenizers-backed CLIPTokenizer gives the same
// rows. (Elsewhere it differs by design: no ftfy, no case-insensitive pre-tokenizer regex.)
TEST(ClipTokenizer, ReferenceAgreesWithTransformersFastOnPlainText) {
  const auto& c = corpus();
  const auto category = c["category"].get<std::vector<std::string>>();
  const auto slow = c["slow"].get<Rows>();
  const auto fast = c["fast"].get<Rows>();
  size_t n = 0;
  for (size_t i = 0; i < slow.size(); ++i) {
    if (category[i] == "ascii" || category[i] == "prompt" || category[i] == "numbers") {
      ++n;
      EXPECT_EQ(slow[i], fast[i]) << "text #" << i;
    }
  }
  EXPECT_GT(n, 500u);
}

TEST(ClipTokenizer, EncodeEqualsReferenceWithoutTruncation) {
  const auto& c = corpus();
  const auto texts = c["texts"].get<std::vector<std::string>>();
  const auto ref = c["slow_full"].get<Rows>();
  int bad = 0;
  size_t longest = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    longest = std::max(longest, ref[i].size());
    const auto ids = tokenizer().encode(texts[i]);
    if (ids != ref[i] && ++bad <= 5) {
      ADD_FAILURE() << "encode mismatch on \"" << escaped(texts[i]) << "\"\n  ours: " << row_string(ids)
                    << "\n  ref:  " << row_string(ref[i]);
    }
  }
  EXPECT_EQ(bad, 0);
  EXPECT_GT(longest, 75u) << "the corpus must exercise truncation";
}

TEST(ClipTokenizer, DecodeEqualsTransformersDecode) {
  const auto& c = corpus();
  const auto texts = c["texts"].get<std::vector<std::string>>();
  const auto rows = c["slow"].get<Rows>();
  const auto expected = c["fast_decode"].get<std::vector<std::string>>();
  int bad = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const std::string ours = tokenizer().decode(rows[i], /*skip_special_tokens=*/true);
    if (ours != expected[i] && ++bad <= 5) {
      ADD_FAILURE() << "decode mismatch on row of \"" << escaped(texts[i]) << "\"\n  ours: \""
                    << escaped(ours) << "\"\n  ref:  \"" << escaped(expected[i]) << "\"";
    }
  }
  EXPECT_EQ(bad, 0);
  const auto hello = tokenizer().tokenize({"Hello, World!"});
  std::string expected_hello = "<|startoftext|>hello , world ! ";
  for (int k = 0; k < 72; ++k) expected_hello += "<|endoftext|>";  // eos + 71 pads
  EXPECT_EQ(tokenizer().decode(tensor_row(hello, 0)), expected_hello);
  EXPECT_EQ(tokenizer().decode(tensor_row(hello, 0), /*skip_special_tokens=*/true), "hello , world !");
  EXPECT_THROW(tokenizer().decode({49408}), std::out_of_range);
}

TEST(ClipTokenizer, ShapesPaddingAndContextLength) {
  const auto& tok = tokenizer();
  const auto empty = tok.tokenize({});
  EXPECT_EQ(empty.sizes(), (std::vector<int64_t>{0, 77}));
  const auto t = tok.tokenize({"", "a cat"}, 8);
  ASSERT_EQ(t.sizes(), (std::vector<int64_t>{2, 8}));
  const auto cat = tok.encode("a cat");
  ASSERT_EQ(cat.size(), 2u);
  EXPECT_EQ(tensor_row(t, 0), (std::vector<int64_t>{49406, 49407, 49407, 49407, 49407, 49407, 49407, 49407}));
  EXPECT_EQ(tensor_row(t, 1), (std::vector<int64_t>{49406, cat[0], cat[1], 49407, 49407, 49407, 49407, 49407}));
  const auto two = tok.tokenize({"a cat sat on the mat"}, 2);
  EXPECT_EQ(tensor_row(two, 0), (std::vector<int64_t>{49406, 49407}));
  EXPECT_THROW(tok.tokenize({"x"}, 1), std::invalid_argument);
}

TEST(ClipTokenizer, LoadsMergesFileAndRejectsBadOnes) {
  const std::string gz = env("SDTRAIN_SOURCE_DIR") +
                         "/plugins/models/stable_diffusion/tokenizer/data/bpe_simple_vocab_16e6.txt.gz";
  const ClipTokenizer from_gz(gz);
  const std::vector<std::string> texts = {"a photograph of an astronaut riding a horse", "日本語 café 😀"};
  EXPECT_TRUE(torch::equal(from_gz.tokenize(texts), tokenizer().tokenize(texts)));
  // The fixture's merges.txt is the plain-text form of the same merges.
  const ClipTokenizer from_txt(fixture_dir() + "/merges.txt");
  EXPECT_TRUE(torch::equal(from_txt.tokenize(texts), tokenizer().tokenize(texts)));

  const std::string dir = env("SDTRAIN_BINARY_DIR");
  const std::string missing = dir + "/no_such_merges.txt.gz";
  try {
    ClipTokenizer bad(missing);
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
  const std::string short_file = dir + "/short_merges.txt";
  std::ofstream(short_file) << "#version: 0.2\ni n\nt h";
  try {
    ClipTokenizer bad(short_file);
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("expected at least 48894 merges"), std::string::npos) << e.what();
  }
  const std::string malformed = dir + "/malformed_merges.txt";
  std::ofstream(malformed) << "#version: 0.2\ni n\nthree symbols here\n";
  try {
    ClipTokenizer bad(malformed);
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("line 3 is not two space-separated symbols"), std::string::npos)
        << e.what();
  }
  const std::string corrupt = dir + "/corrupt_merges.txt.gz";
  std::ofstream(corrupt, std::ios::binary) << std::string("\x1f\x8b\x08\x00garbage-not-deflate", 23);
  EXPECT_THROW(ClipTokenizer bad(corrupt), FormatError);
}

TEST(ClipTokenizer, ConcurrentCallsAgree) {
  const auto texts = corpus()["texts"].get<std::vector<std::string>>();
  const ClipTokenizer fresh;  // shares the vocabulary, exercises the cache under contention
  const torch::Tensor expected = fresh.tokenize(texts);
  std::vector<torch::Tensor> results(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < results.size(); ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::string> shuffled(texts.rbegin(), texts.rend());
      if (t % 2 == 0) shuffled.assign(texts.begin(), texts.end());
      auto out = fresh.tokenize(shuffled);
      results[t] = t % 2 == 0 ? out : out.flip(0);
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& r : results) EXPECT_TRUE(torch::equal(r, expected));
}

}  // namespace
}  // namespace sdtrain

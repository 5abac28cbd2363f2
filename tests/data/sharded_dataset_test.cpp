// The sharded dataset plugins against their references: webdataset against the webdataset
// library and parquet against datasets.load_dataset, on shards those libraries' writers made
// (tests/data/make_shard_fixtures.py); their bad input; and `sddata list` / `sddata convert`,
// whose outputs the references read back with the same bytes.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "framework/data/image_codec.h"
#include "framework/util/file_util.h"
#include "plugins/datasets/shard_files.h"
#include "tests/common/test_env.h"
#include "tests/data/dataset_support.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

fs::path shards() { return test::fixture_dir("data_shards"); }

std::vector<nlohmann::json> read_jsonl(const std::string& text) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(nlohmann::json::parse(line));
  }
  return lines;
}

/// The JSON lines of a command's output that also holds other lines (a Python library's
/// progress bars and log messages on stderr).
std::vector<nlohmann::json> json_lines_of(const std::string& output) {
  std::string lines;
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("{")) lines += line + "\n";
  }
  return read_jsonl(lines);
}

/// (key, caption, sha256) of every sample, in order.
std::vector<std::string> digest(const Dataset& dataset) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < dataset.size(); ++i) {
    const Sample sample = dataset.get(i);
    out.push_back(sample.key + " | " + sample.caption + " | " + sha256_hex(sample.encoded));
  }
  return out;
}

std::vector<std::string> digest(const std::vector<nlohmann::json>& lines, bool with_key = true) {
  std::vector<std::string> out;
  for (const nlohmann::json& line : lines) {
    out.push_back((with_key ? line.at("key").get<std::string>() + " | " : "") + line.at("caption").get<std::string>() +
                  " | " + line.at("sha256").get<std::string>());
  }
  return out;
}

std::unique_ptr<Dataset> webdataset(const std::vector<std::string>& patterns, bool allow_empty = false) {
  WebDatasetOptions options;
  for (const std::string& pattern : patterns) options.add_shards(pattern);
  options.set_allow_empty_captions(allow_empty);
  return testing::make_dataset("webdataset", options);
}

std::unique_ptr<Dataset> parquet(const std::string& path) {
  ParquetOptions options;
  options.add_files(path);
  return testing::make_dataset("parquet", options);
}

TEST(ShardFiles, BracesExpandAsWebDatasetsBraceexpand) {
  auto expand = [](const std::string& pattern) { return expand_braces(pattern, "shards"); };
  using List = std::vector<std::string>;
  EXPECT_EQ(expand("a-{00008..00011}.tar"), (List{"a-00008.tar", "a-00009.tar", "a-00010.tar", "a-00011.tar"}));
  EXPECT_EQ(expand("{8..11}"), (List{"8", "9", "10", "11"}));
  EXPECT_EQ(expand("{3..1}"), (List{"3", "2", "1"}));
  EXPECT_EQ(expand("{a,b}-{1..2}"), (List{"a-1", "a-2", "b-1", "b-2"}));
  EXPECT_EQ(expand("x{a,{b,c}}y"), (List{"xay", "xby", "xcy"}));
  EXPECT_EQ(expand("{x}.tar"), (List{"{x}.tar"}));
  EXPECT_EQ(expand("plain.tar"), (List{"plain.tar"}));
  EXPECT_THROW(expand("a{0..2"), ConfigError);
  EXPECT_THROW(expand("a}"), ConfigError);
}

TEST(WebDatasetPlugin, YieldsTheSamplesTheWebdatasetLibraryYields) {
  const auto dataset = webdataset({(shards() / "wds" / "train-{00000..00002}.tar").string()});
  const auto expected = read_jsonl(read_file((shards() / "wds_expected.jsonl").string()));
  ASSERT_EQ(expected.size(), 14u);
  EXPECT_EQ(digest(*dataset), digest(expected));
  EXPECT_EQ(dataset->shard_ends(), (std::vector<std::size_t>{5, 10, 14}));
  // A folder stands for its .tar files in name order.
  EXPECT_EQ(digest(*webdataset({(shards() / "wds").string()})), digest(expected));
}

TEST(WebDatasetPlugin, BadShardsAreNamedAndTheirGoodSamplesKept) {
  const fs::path bad = shards() / "bad";
  // Cut inside the third sample's image: two samples whole, the third bad and named.
  const auto truncated = webdataset({(bad / "truncated.tar").string()});
  ASSERT_EQ(truncated->size(), 3u);
  EXPECT_EQ(testing::data_error(*truncated, 0), "");
  EXPECT_EQ(testing::data_error(*truncated, 1), "");
  const std::string broken = testing::data_error(*truncated, 2);
  EXPECT_NE(broken.find("truncated.tar (key '0002'): the shard breaks at this sample: member '0002.webp' needs "
                        "3214 bytes from byte 23552"),
            std::string::npos)
      << broken;
  // A member climbing out with "../" makes its sample bad; the good one stays.
  const auto climb = webdataset({(bad / "climb.tar").string()});
  ASSERT_EQ(climb->size(), 2u);
  EXPECT_EQ(climb->get(0).caption, "a good sample");
  EXPECT_NE(testing::data_error(*climb, 1).find("member '../evil.jpg' is an absolute path or climbs out of the shard"),
            std::string::npos)
      << testing::data_error(*climb, 1);
  try {
    climb->get(1);
  } catch (const DataError& error) {
    EXPECT_EQ(error.sample_key(), "climb.tar:../evil");
  }
  WebDatasetOptions options;
  options.add_shards((bad / "compressed.tar").string());
  EXPECT_NE(testing::config_error("webdataset", options).find("the shard is compressed (gzip)"), std::string::npos)
      << testing::config_error("webdataset", options);
  options.set_shards(0, (shards() / "wds" / "train-{00000..00003}.tar").string());
  EXPECT_NE(testing::config_error("webdataset", options).find("file not found: "), std::string::npos);
  EXPECT_NE(testing::config_error("webdataset", options).find("train-00003.tar (from the pattern"), std::string::npos);
  // The caption from another part (here the .cls members), or from a json part's field.
  WebDatasetOptions other_part;
  other_part.add_shards((shards() / "wds" / "train-00000.tar").string());
  other_part.set_caption_extension("cls");
  const auto by_cls = testing::make_dataset("webdataset", other_part);
  EXPECT_EQ(by_cls->get(1).caption, "1");
  WebDatasetOptions json_part;
  json_part.add_shards((bad / "json_captions.tar").string());
  json_part.set_caption_extension("json");
  const auto by_json = testing::make_dataset("webdataset", json_part);
  EXPECT_EQ(by_json->get(0).caption, "from json \u00e9");
  EXPECT_NE(testing::data_error(*by_json, 1).find("json_captions.tar (key 'b'): empty caption"), std::string::npos)
      << testing::data_error(*by_json, 1);
}

#ifdef SDTRAIN_WITH_PARQUET
TEST(ParquetPlugin, YieldsTheRowsDatasetsLoadDatasetYields) {
  const auto dataset = parquet((shards() / "parquet").string());
  const auto expected = read_jsonl(read_file((shards() / "parquet_expected.jsonl").string()));
  ASSERT_EQ(expected.size(), 14u);
  EXPECT_EQ(digest(*dataset), digest(expected));
  // Row groups of 5 rows (to_parquet's batch_size): 5 + 2 per file.
  EXPECT_EQ(dataset->shard_ends(), (std::vector<std::size_t>{5, 7, 12, 14}));
  // Any order of reads gives the same rows (the row-group cache holds 8 of them).
  for (std::size_t i : {13u, 0u, 6u, 7u, 5u, 12u}) {
    EXPECT_EQ(sha256_hex(dataset->get(i).encoded), expected[i].at("sha256").get<std::string>()) << i;
  }
}

TEST(ParquetPlugin, BadFilesNameTheFileAndTheColumn) {
  const fs::path bad = shards() / "bad";
  ParquetOptions options;
  options.add_files((bad / "wrong_schema.parquet").string());
  const std::string error = testing::config_error("parquet", options);
  EXPECT_NE(error.find("image_column: no column 'image' in " + (bad / "wrong_schema.parquet").string() +
                       " (its columns: img, text)"),
            std::string::npos)
      << error;
  options.set_image_column("img");
  EXPECT_NE(testing::config_error("parquet", options).find("the column 'img' of "), std::string::npos);
  EXPECT_NE(testing::config_error("parquet", options).find(" is int64; expected struct<bytes: binary, path: string>"),
            std::string::npos)
      << testing::config_error("parquet", options);
  // Bytes that are not an image come through as they are; the loader's decode refuses them.
  const auto not_image = parquet((bad / "not_image.parquet").string());
  EXPECT_EQ(not_image->get(0).encoded, "hello, not an image");
  EXPECT_EQ(sniff_image_format(not_image->get(0).encoded), ImageFormat::UNKNOWN);
  EXPECT_EQ(sniff_image_format(not_image->get(1).encoded), ImageFormat::PNG);
  const auto null_image = parquet((bad / "null_image.parquet").string());
  EXPECT_NE(testing::data_error(*null_image, 0).find("null_image.parquet row 0: the image is null"), std::string::npos)
      << testing::data_error(*null_image, 0);
  EXPECT_EQ(testing::data_error(*null_image, 1), "");
  ParquetOptions not_parquet;
  not_parquet.add_files((shards() / "wds" / "train-00000.tar").string());
  EXPECT_NE(testing::config_error("parquet", not_parquet).find("not a readable Parquet file"), std::string::npos);
  // A footer whose row groups disagree with the file's row count (the fuzzer's input: every one
  // of a forged row group's 505,438 rows used to fail to read, one by one).
  ParquetOptions forged;
  const fs::path forged_file =
      test::source_dir() / "tests" / "fuzz" / "regressions" / "parquet" / "row-group-declaring-505438-rows-in-a-7-row-file";
  forged.add_files(forged_file.string());
  EXPECT_NE(testing::config_error("parquet", forged)
                .find(forged_file.string() + ": its row groups hold 505443 rows but its footer declares 7; the file is corrupt"),
            std::string::npos)
      << testing::config_error("parquet", forged);
}
#endif

std::string sddata(const std::string& arguments, int* code) {
  std::string output;
  *code = test::run_command((test::binary_dir() / "bin" / "sddata").string() + " " + arguments + " 2>&1", &output);
  return output;
}

/// What the reference libraries read from converted output: webdataset for tar shards, datasets
/// for Parquet files, as JSON lines of {caption, sha256}.
std::string read_with_reference(const std::string& layout, const fs::path& dir) {
  std::string output;
  const std::string command = test::env_or_fail("SDTRAIN_PYTHON") + " " +
                              (test::source_dir() / "tests" / "data" / "read_with_reference.py").string() + " " +
                              layout + " " + dir.string();
  EXPECT_EQ(test::run_command(command, &output), 0) << command << "\n" << output;
  return output;
}

TEST(Sddata, ListAndConvertRoundTripsKeepTheBytesAndTheReferencesReadThem) {
  const fs::path out = test::scratch_dir();
  int code = 0;
  const std::string listed = sddata("list " + (shards() / "wds").string(), &code);
  ASSERT_EQ(code, 0) << listed;
  const auto expected = read_jsonl(read_file((shards() / "wds_expected.jsonl").string()));
  EXPECT_EQ(digest(read_jsonl(listed)), digest(expected));
  const std::vector<std::string> contents = digest(expected, /*with_key=*/false);

  // webdataset -> parquet -> image folder -> webdataset, 4 samples per file.
  std::string text = sddata("convert " + (shards() / "wds").string() + " " + (out / "pq").string() +
                                " --to parquet --shard-size 4 --rows-per-group 3", &code);
#ifdef SDTRAIN_WITH_PARQUET
  ASSERT_EQ(code, 0) << text;
  EXPECT_NE(text.find("convert: 14 samples into 4 file(s)"), std::string::npos) << text;
  EXPECT_TRUE(fs::exists(out / "pq" / "train-00003-of-00004.parquet"));
  EXPECT_EQ(digest(json_lines_of(read_with_reference("parquet", out / "pq")), false), contents);
  text = sddata("convert " + (out / "pq").string() + " " + (out / "folder").string() + " --to image_folder", &code);
#else
  EXPECT_EQ(code, 2) << text;
  text = sddata("convert " + (shards() / "wds").string() + " " + (out / "folder").string() + " --to image_folder",
                &code);
#endif
  ASSERT_EQ(code, 0) << text;
  EXPECT_TRUE(fs::exists(out / "folder" / "images" / "00000000.jpg"));
  EXPECT_TRUE(fs::exists(out / "folder" / "images" / "00000001.png"));
  EXPECT_EQ(digest(read_jsonl(sddata("list " + (out / "folder").string(), &code)), false), contents);
  text = sddata("convert " + (out / "folder").string() + " " + (out / "wds").string() +
                    " --to webdataset --shard-size 4", &code);
  ASSERT_EQ(code, 0) << text;
  EXPECT_EQ(digest(json_lines_of(read_with_reference("webdataset", out / "wds")), false), contents);
  EXPECT_EQ(digest(read_jsonl(sddata("list " + (out / "wds").string(), &code)), false), contents);

  // Never into a folder that holds something; bad samples are skipped and listed.
  text = sddata("convert " + (out / "folder").string() + " " + (out / "wds").string() + " --to webdataset", &code);
  EXPECT_EQ(code, 2) << text;
  EXPECT_NE(text.find("exists and is not an empty folder; converting never overwrites"), std::string::npos) << text;
  text = sddata("convert " + (shards() / "bad" / "climb.tar").string() + " " + (out / "climb").string() +
                    " --to image_folder", &code);
  EXPECT_EQ(code, 1) << text;
  EXPECT_NE(text.find("skipped climb.tar:../evil: "), std::string::npos) << text;
  EXPECT_NE(text.find("convert: 1 samples into 2 file(s)"), std::string::npos) << text;
  text = sddata("convert " + (shards() / "wds").string() + " " + (out / "x").string(), &code);
  EXPECT_EQ(code, 2) << text;
  EXPECT_NE(text.find("convert takes OUT and --to LAYOUT"), std::string::npos) << text;
}

}  // namespace
}  // namespace sdtrain

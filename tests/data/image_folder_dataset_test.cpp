// The image_folder dataset plugin: metadata parsing, lazy per-row errors, config errors.
#include <string>

#include <gtest/gtest.h>

#include "framework/data/image_codec.h"
#include "sdtrain/errors.h"
#include "tests/data/dataset_support.h"
#include "tests/data/test_support.h"

namespace sdtrain {
namespace {

using testing::config_error;
using testing::make_dataset;
using testing::TempDir;

std::string tiny_png(std::uint8_t value) {
  Image image;
  image.width = 2;
  image.height = 3;
  image.channels = 3;
  image.pixels.assign(18, value);
  return encode_png(image);
}

ImageFolderOptions options_for(const TempDir& dir) {
  ImageFolderOptions options;
  options.set_root(dir.path().string());
  return options;
}

TEST(ImageFolderDataset, ReadsRfc4180CsvWithNestedFolders) {
  TempDir dir;
  dir.file("a.png", tiny_png(10));
  dir.file("sub/dir/b.png", tiny_png(20));
  dir.file("c d.png", tiny_png(30));
  dir.file("metadata.csv",
           "\xEF\xBB\xBF" "file_name,text,extra\r\n"
           "a.png,\"a man, with a beard\",x\r\n"
           "\r\n"
           "sub/dir/b.png,\"he said \"\"hi\"\"\nthen left\",\"y,z\"\r\n"
           "\"c d.png\",plain\n");
  const auto dataset = make_dataset("image_folder", options_for(dir));
  ASSERT_EQ(dataset->size(), 3u);
  const Sample a = dataset->get(0);
  EXPECT_EQ(a.key, "a.png");
  EXPECT_EQ(a.caption, "a man, with a beard");
  EXPECT_EQ(a.encoded, tiny_png(10));
  EXPECT_TRUE(a.image.empty());
  const Sample b = dataset->get(1);
  EXPECT_EQ(b.key, "sub/dir/b.png");
  EXPECT_EQ(b.caption, "he said \"hi\"\nthen left");
  EXPECT_EQ(decode_image(b.encoded, b.key, 0).pixels[0], 20);
  EXPECT_EQ(dataset->get(2).caption, "plain");
  EXPECT_EQ(dataset->get(2).key, "c d.png");
}

TEST(ImageFolderDataset, ReadsJsonLinesAndCustomColumns) {
  TempDir dir;
  dir.file("imgs/1.png", tiny_png(1));
  dir.file("imgs/2.png", tiny_png(2));
  dir.file("metadata.jsonl",
           "{\"path\": \"imgs/1.png\", \"caption\": \"first \\\"one\\\"\", \"score\": 3}\n"
           "\n"
           "{\"caption\": \"second\", \"path\": \"imgs/2.png\"}\n");
  ImageFolderOptions options = options_for(dir);
  options.set_file_name_column("path");
  options.set_caption_column("caption");
  const auto dataset = make_dataset("image_folder", options);
  ASSERT_EQ(dataset->size(), 2u);
  EXPECT_EQ(dataset->get(0).caption, "first \"one\"");
  EXPECT_EQ(dataset->get(1).key, "imgs/2.png");
  EXPECT_EQ(dataset->get(1).encoded, tiny_png(2));
  // Wrong default column names name the columns there are.
  EXPECT_EQ(config_error("image_folder", options_for(dir)),
            "data.train.options.file_name_column: column 'file_name' not in " + (dir.path() / "metadata.jsonl").string() +
                " (columns: path, caption, score)");
}

TEST(ImageFolderDataset, RelativeRootIsResolvedAgainstTheConfigDirectory) {
  TempDir dir;
  dir.file("data/x.png", tiny_png(5));
  dir.file("data/metadata.csv", "file_name,text\nx.png,five\n");
  ImageFolderOptions options;
  options.set_root("data");
  PluginContext context;
  context.base_dir = dir.path().string();
  EXPECT_EQ(make_dataset("image_folder", options, context)->get(0).caption, "five");
}

TEST(ImageFolderDataset, BadRowsThrowDataErrorNamingThePathOnGet) {
  TempDir dir;
  dir.file("ok.png", tiny_png(1));
  dir.file("nocaption.png", tiny_png(1));
  dir.file("metadata.csv",
           "file_name,text\n"
           "ok.png,fine\n"
           "missing.png,gone\n"
           "nocaption.png,\n"
           "../escape.png,bad\n"
           "/etc/passwd,bad\n"
           "sub/../../escape.png,bad\n"
           ",no file\n"
           "nocaption.png\n");
  const auto dataset = make_dataset("image_folder", options_for(dir));
  ASSERT_EQ(dataset->size(), 8u);  // nothing is dropped at construction
  const std::string root = dir.path().string();
  const std::string csv = root + "/metadata.csv";
  EXPECT_EQ(testing::data_error(*dataset, 0), "");
  EXPECT_EQ(testing::data_error(*dataset, 1), root + "/missing.png: cannot read: No such file or directory");
  EXPECT_EQ(testing::data_error(*dataset, 2), root + "/nocaption.png: empty caption (column 'text', " + csv +
                                         " line 4); set allow_empty_captions to train on it unconditionally");
  EXPECT_EQ(testing::data_error(*dataset, 3),
            csv + " line 5: file name '../escape.png' is outside the dataset root " + root);
  EXPECT_NE(testing::data_error(*dataset, 4).find("file name '/etc/passwd' is outside the dataset root"),
            std::string::npos);
  EXPECT_NE(testing::data_error(*dataset, 5).find("'sub/../../escape.png' is outside"), std::string::npos);
  EXPECT_EQ(testing::data_error(*dataset, 6), csv + " line 8: empty metadata.csv file name");
  EXPECT_NE(testing::data_error(*dataset, 7).find("empty caption"), std::string::npos);  // short row padded

  ImageFolderOptions lenient = options_for(dir);
  lenient.set_allow_empty_captions(true);
  const auto unconditional = make_dataset("image_folder", lenient);
  EXPECT_EQ(unconditional->get(2).caption, "");
  EXPECT_EQ(unconditional->get(2).encoded, tiny_png(1));
}

TEST(ImageFolderDataset, ConfigErrorsNameTheOption) {
  TempDir dir;
  ImageFolderOptions options = options_for(dir);
  options.set_root((dir.path() / "nope").string());
  EXPECT_EQ(config_error("image_folder", options),
            "data.train.options.root: directory not found: " + (dir.path() / "nope").string());
  EXPECT_EQ(config_error("image_folder", ImageFolderOptions()), "data.train.options.root: required (the dataset folder)");
  EXPECT_NE(config_error("image_folder", options_for(dir))
                .find("data.train.options.root: no metadata.csv or metadata.jsonl in " + dir.path().string()),
            std::string::npos);

  dir.file("metadata.csv", "file_name,text\na.png,x\n");
  ImageFolderOptions bad_column = options_for(dir);
  bad_column.set_caption_column("txt");
  EXPECT_EQ(config_error("image_folder", bad_column),
            "data.train.options.caption_column: column 'txt' not in " + (dir.path() / "metadata.csv").string() +
                " (columns: file_name, text)");

  dir.file("metadata.jsonl", "{}\n");
  EXPECT_NE(config_error("image_folder", options_for(dir))
                .find("data.train.options.metadata_file: both metadata.csv and metadata.jsonl"),
            std::string::npos);
  ImageFolderOptions choose = options_for(dir);
  choose.set_metadata_file("metadata.csv");
  EXPECT_EQ(config_error("image_folder", choose), "");
  choose.set_metadata_file("other.csv");
  EXPECT_EQ(config_error("image_folder", choose),
            "data.train.options.metadata_file: file not found: " + (dir.path() / "other.csv").string());
}

// DreamBooth's layout: a folder of images and one caption for all, no metadata file.
TEST(ImageFolderDataset, OneCaptionForEveryImageFileUnderRoot) {
  TempDir dir;
  dir.file("b.PNG", tiny_png(20));
  dir.file("a.jpg", tiny_png(10));  // the bytes decide the format, not the extension
  dir.file("samples/00000.png", tiny_png(30));
  dir.file("notes.txt", "not an image");
  dir.file("metadata.csv", "file_name,text\na.jpg,ignored\n");
  ImageFolderOptions options = options_for(dir);
  options.set_caption("a photo of sks dog");
  const auto dataset = make_dataset("image_folder", options);
  ASSERT_EQ(dataset->size(), 3u);
  const std::vector<std::string> keys{"a.jpg", "b.PNG", "samples/00000.png"};
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const Sample sample = dataset->get(i);
    EXPECT_EQ(sample.key, keys[i]);
    EXPECT_EQ(sample.caption, "a photo of sks dog");
    EXPECT_EQ(sample.location, (dir.path() / keys[i]).string());
  }
  EXPECT_EQ(dataset->get(0).encoded, tiny_png(10));

  options.set_metadata_file("metadata.csv");
  EXPECT_EQ(config_error("image_folder", options),
            "data.train.options.metadata_file: set together with caption, which lists the images without a metadata "
            "file; set one of them");
  TempDir empty;
  empty.file("readme.txt", "no images here");
  ImageFolderOptions none = options_for(empty);
  none.set_caption("x");
  EXPECT_EQ(config_error("image_folder", none), "data.train.options.root: no image files (.jpg, .jpeg, .png, .webp) under " +
                                                    empty.path().string() + " (caption is set, so no metadata file is read)");
  none.set_caption("");
  EXPECT_EQ(config_error("image_folder", none),
            "data.train.options.caption: empty; set allow_empty_captions to train unconditionally");
}

TEST(ImageFolderDataset, MalformedMetadataIsAConfigErrorWithTheLine) {
  TempDir dir;
  ImageFolderOptions options = options_for(dir);
  options.set_metadata_file("m.csv");
  const std::string path = (dir.path() / "m.csv").string();
  dir.file("m.csv", "file_name,text\na.png,\"unterminated\nb.png,x\n");
  EXPECT_EQ(config_error("image_folder", options),
            "data.train.options.metadata_file: " + path + " line 2: unterminated quoted field");
  dir.file("m.csv", "file_name,text\na.png,x,y\n");
  EXPECT_EQ(config_error("image_folder", options),
            "data.train.options.metadata_file: " + path + " line 2: 3 fields but the header has 2");
  dir.file("m.csv", "file_name,text\na.png,\"x\"y\n");
  EXPECT_NE(config_error("image_folder", options).find("line 2: unexpected text after a closing quote"),
            std::string::npos);
  dir.file("m.csv", "file_name,text\n");
  EXPECT_EQ(config_error("image_folder", options), "data.train.options.metadata_file: " + path + " has no rows");
  dir.file("m.csv", "");
  EXPECT_NE(config_error("image_folder", options).find("is empty"), std::string::npos);
  options.set_metadata_file("m.jsonl");
  dir.file("m.jsonl", "{\"file_name\": \"a.png\", \"text\": \"x\"}\n[1, 2]\n");
  EXPECT_EQ(config_error("image_folder", options), "data.train.options.metadata_file: " +
                                                       (dir.path() / "m.jsonl").string() +
                                                       " line 2: expected a JSON object");
}

TEST(ImageFolderDataset, IsRegisteredWithItsOptionsType) {
  anchor_builtin_plugins();
  const PluginEntry* entry = Registry<Dataset>::instance().find("image_folder");
  ASSERT_NE(entry, nullptr);
  EXPECT_EQ(entry->options_type, ImageFolderOptions::descriptor());
  ASSERT_NE(Registry<Dataset>::instance().find("text_only"), nullptr);
}

}  // namespace
}  // namespace sdtrain

// The sddemodata tool: writes an image folder that image_folder reads back, deterministically.
#include <cstdlib>
#include <regex>
#include <set>
#include <sys/wait.h>
#include <string>

#include <gtest/gtest.h>

#include "framework/data/image_codec.h"
#include "tests/data/dataset_support.h"
#include "tests/data/test_support.h"

namespace sdtrain {
namespace {

int run_tool(const std::string& arguments) {
  const std::string tool = testing::binary_dir() + "/bin/sddemodata";
  const int status = std::system((tool + " " + arguments + " > /dev/null 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(SdDemoData, WritesAnImageFolderThatImageFolderReads) {
  testing::TempDir dir;
  const std::string out = (dir.path() / "demo").string();
  ASSERT_EQ(run_tool("--out " + out + " --count 12 --size 32 --seed 5"), 0);
  EXPECT_FALSE(std::filesystem::exists(out + ".tmp"));
  ImageFolderOptions options;
  options.set_root(out);
  const auto dataset = testing::make_dataset("image_folder", options);
  ASSERT_EQ(dataset->size(), 12u);
  const std::regex caption_pattern(
      "a (red|green|blue|yellow|orange|purple|pink|brown) (circle|square|triangle) on a (white|black|gray) background");
  std::set<std::string> captions;
  for (std::size_t i = 0; i < dataset->size(); ++i) {
    const Sample sample = dataset->get(i);
    std::smatch match;
    ASSERT_TRUE(std::regex_match(sample.caption, match, caption_pattern)) << sample.caption;
    captions.insert(sample.caption);
    const Image image = decode_image(sample.encoded, sample.key, 0);
    EXPECT_EQ(image.width, 32);
    EXPECT_EQ(image.height, 32);
    // The corner is background of the named colour; the centre region holds the shape.
    const int expected = match[3] == "white" ? 255 : match[3] == "black" ? 0 : 128;
    for (int c = 0; c < 3; ++c) EXPECT_EQ(image.pixels[c], expected) << sample.key;
    int shape_pixels = 0;
    for (int p = 0; p < 32 * 32; ++p) shape_pixels += image.pixels[p * 3] != expected || image.pixels[p * 3 + 1] != expected;
    // At least 5% of the image: the smallest triangle the generator draws covers about 9%.
    EXPECT_GT(shape_pixels, 32 * 32 / 20) << sample.key;
  }
  EXPECT_GT(captions.size(), 5u);

  // Same seed, same bytes; another seed, other images; an existing folder is refused.
  const std::string again = (dir.path() / "again").string();
  ASSERT_EQ(run_tool("--out " + again + " --count 12 --size 32 --seed 5"), 0);
  const std::string other = (dir.path() / "other").string();
  ASSERT_EQ(run_tool("--out " + other + " --count 12 --size 32 --seed 6"), 0);
  EXPECT_EQ(read_file(out + "/metadata.csv"), read_file(again + "/metadata.csv"));
  EXPECT_EQ(read_file(out + "/images/000007.png"), read_file(again + "/images/000007.png"));
  EXPECT_NE(read_file(out + "/metadata.csv"), read_file(other + "/metadata.csv"));
  EXPECT_EQ(run_tool("--out " + out + " --count 3 --size 32"), 2);
  EXPECT_EQ(dataset->size(), 12u);
  ASSERT_EQ(run_tool("--out " + out + " --count 3 --size 32 --force"), 0);
  EXPECT_EQ(testing::make_dataset("image_folder", options)->size(), 3u);
  EXPECT_EQ(run_tool("--out " + out + " --count 0"), 2);
  EXPECT_EQ(run_tool("--count 3"), 2);
}

}  // namespace
}  // namespace sdtrain

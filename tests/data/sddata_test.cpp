// sddata on an image folder of known contents: inspect's counts, sizes, histogram and bucket
// report; verify's list of bad files and exit code; usage errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "framework/data/dataset_survey.h"
#include "tests/common/test_env.h"
#include "tests/data/dataset_support.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

/// 5 images: 64x64, 96x48, 48x96, 32x32 with an empty caption, and broken.png (a PNG header over
/// garbage: its size reads, its pixels do not).
fs::path known_folder(const fs::path& dir) {
  fs::create_directories(dir);
  testing::write_test_png((dir / "square.png").string(), 64, 64, 0);
  testing::write_test_png((dir / "wide.png").string(), 96, 48, 1);
  testing::write_test_png((dir / "tall.png").string(), 48, 96, 2);
  testing::write_test_png((dir / "small.png").string(), 32, 32, 3);
  std::ifstream in(dir / "square.png", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  bytes.resize(bytes.size() / 2);  // signature and IHDR intact, image data cut
  std::ofstream(dir / "broken.png", std::ios::binary) << bytes;
  std::ofstream(dir / "metadata.csv") << "file_name,text\nsquare.png,a square\nwide.png,a wide one\n"
                                         "tall.png,a tall one\nsmall.png,\nbroken.png,broken\n";
  return dir;
}

std::string sddata(const std::string& arguments, int* code) {
  std::string output;
  *code = test::run_command((test::binary_dir() / "bin" / "sddata").string() + " " + arguments, &output);
  return output;
}

TEST(Sddata, InspectReportsCountsSizesAspectsAndBuckets) {
  const fs::path dir = known_folder(test::scratch_dir() / "data");
  int code = 0;
  std::string out = sddata("inspect " + dir.string(), &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(out.find("buckets:"), std::string::npos) << "no bucket report unless asked";
  // The config's data.train and data.buckets (area 128^2, sides 64..256): 96x48 ties between 1:1
  // and 3:1 and takes the first (kohya's argmin), 48x96 goes to 64x192.
  const std::string config = test::write_text(
      dir.parent_path() / "cfg.pbtxt",
      "run { max_steps: 1 }\nmodel { type: \"stable_diffusion\" }\n"
      "data { train { type: \"image_folder\" options { [type.googleapis.com/sdtrain.ImageFolderOptions] { root: \"" +
          dir.string() + "\" allow_empty_captions: true } } }\n"
          "  batch_size: 2 transforms { resolution: 128 } buckets { min_side: 64 max_side: 256 } }\n");
  out = sddata("inspect --config " + config, &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("samples: 5 (5 readable, 0 unreadable)"), std::string::npos) << out;
  EXPECT_NE(out.find("empty captions: 1"), std::string::npos) << out;
  EXPECT_NE(out.find("width  min / median / max: 32 / 64 / 96"), std::string::npos) << out;
  EXPECT_NE(out.find("height min / median / max: 32 / 64 / 96"), std::string::npos) << out;
  // 3 square (64, 32 and the broken one's header), 1 of 2:1, 1 of 1:2.
  EXPECT_NE(out.find("0.90-1.11           3  "), std::string::npos) << out;
  EXPECT_NE(out.find("0.50-0.70           1  "), std::string::npos) << out;
  EXPECT_NE(out.find(">= 2.00             1  "), std::string::npos) << out;
  EXPECT_NE(out.find("buckets: 2 in use, 5 images in 3 global batches of 2 per epoch"), std::string::npos) << out;
  EXPECT_NE(out.find("data.train (image_folder)"), std::string::npos) << out;
}

TEST(Sddata, VerifyDecodesEveryImageAndListsTheBadOnes) {
  const fs::path dir = known_folder(test::scratch_dir() / "data");
  int code = 0;
  const std::string out = sddata("verify " + dir.string(), &code);
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("unreadable broken.png: " + (dir / "broken.png").string()), std::string::npos) << out;
  EXPECT_NE(out.find("verify: 1 bad samples"), std::string::npos) << out;
  fs::remove(dir / "broken.png");
  std::ofstream(dir / "metadata.csv") << "file_name,text\nsquare.png,a square\n";
  EXPECT_NE(sddata("verify " + dir.string(), &code).find("verify: every sample decodes"), std::string::npos);
  EXPECT_EQ(code, 0);
}

TEST(Sddata, UsageErrorsExitTwo) {
  int code = 0;
  const std::string out = sddata("transmogrify /tmp", &code);
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("expected `inspect`, `verify`, `list` or `convert`"), std::string::npos) << out;
  sddata("inspect", &code);
  EXPECT_EQ(code, 2);
  const std::string missing = sddata("inspect /nonexistent-sddata-folder", &code);
  EXPECT_EQ(code, 2) << missing;
  EXPECT_NE(missing.find("/nonexistent-sddata-folder: not a dataset: expected an image folder (metadata.csv or "
                         "metadata.jsonl), .tar shards or .parquet files"),
            std::string::npos)
      << missing;
}

TEST(DatasetSurvey, CountsAndHistogramFromScans) {
  std::vector<SampleScan> scans(4);
  scans[0] = {true, "a", 100, 100, false, ""};
  scans[1] = {true, "b", 300, 100, true, ""};
  scans[2] = {true, "c", 0, 0, false, "c: corrupt"};
  scans[3] = {true, "d", 100, 250, false, ""};
  const DatasetSurvey result = survey(scans);
  EXPECT_EQ(result.samples, 4);
  EXPECT_EQ(result.empty_captions, 1);
  ASSERT_EQ(result.unreadable.size(), 1u);
  EXPECT_EQ(result.unreadable[0]->key, "c");
  EXPECT_EQ(result.aspect_counts, (std::vector<int64_t>{1, 0, 0, 1, 0, 0, 1}));
  const std::string text = format_survey(result, 0);
  EXPECT_NE(text.find("... and 1 more unreadable"), std::string::npos) << text;
}

}  // namespace
}  // namespace sdtrain

// `mpirun -np 2 sdtrain` on an image folder with bad data in it: truncated JPEG and PNG, a
// zero-byte file, a PNG whose header claims 100000 x 100000 pixels (refused before decoding), a
// row naming a missing file and a row without a caption. The run goes on per data.bad_data (each
// bad sample logged once with its path and the reason, replaced by the next good one), both ranks
// take every step, and past max_bad_samples the job stops with the reason instead of hanging.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/common/test_env.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

struct BadFile {
  std::string row;     ///< metadata.csv row
  std::string path;    ///< what the log must name
  std::string reason;  ///< and why
};

/// 16 rows: 10 good images and 6 bad ones spread over both ranks' slices (shuffle off).
std::vector<BadFile> make_folder(const fs::path& data) {
  fs::create_directories(data);
  const fs::path images = test::fixture_dir("data_images");
  const std::vector<std::string> good = {"rgb.png",      "gray.png",      "palette.png",    "baseline.jpg",
                                         "progressive.jpg", "lossy.webp", "rgba.png",       "cmyk.jpg",
                                         "lossless.webp", "subsampling444.jpg"};
  for (const auto& name : good) fs::copy_file(images / name, data / name);
  for (const char* name : {"truncated.jpg", "truncated.png", "empty.png", "bomb.png"}) {
    fs::copy_file(images / name, data / name);
  }
  fs::copy_file(images / "rgb.png", data / "uncaptioned.png");
  const std::string root = data.string() + "/";
  const std::vector<BadFile> bad = {
      {"truncated.jpg,a truncated jpeg", root + "truncated.jpg", ""},
      {"empty.png,a zero-byte file", root + "empty.png", ""},
      {"bomb.png,a decompression bomb", root + "bomb.png", "exceeds the limit of"},
      {"missing.png,a missing file", root + "missing.png", "No such file or directory"},
      {"uncaptioned.png,", root + "uncaptioned.png", "empty caption"},
      {"truncated.png,a truncated png", root + "truncated.png", ""},
  };
  std::ofstream csv(data / "metadata.csv");
  csv << "file_name,text\n";
  for (std::size_t i = 0; i < good.size(); ++i) {
    csv << good[i] << ",a picture number " << i << "\n";
    if (i < bad.size()) csv << bad[i].row << "\n";
  }
  return bad;
}

std::string config_for(const fs::path& dir, int max_bad_samples) {
  return test::write_text(
      dir / "cfg.pbtxt",
      "plugin_libraries: \"" + test::library("sdtrain_test_plugins").string() + "\"\n" +
          "run { output_dir: \"out\" seed: 3 max_steps: 4 checkpoint_every_n_steps: 0 val_every_n_epochs: 0 "
          "log_every_n_steps: 1 }\n"
          "model { type: \"test_tiny_denoiser\" }\n"
          "data { train { type: \"image_folder\" options { [type.googleapis.com/sdtrain.ImageFolderOptions] { root: \"" +
          (dir / "data").string() + "\" } } }\n"
          "       batch_size: 2 num_workers: 2 shuffle: false transforms { resolution: 16 }\n"
          "       bad_data { max_bad_samples: " + std::to_string(max_bad_samples) + " } }\n");
}

TEST(CorruptData, TwoRanksSkipEachBadFileByPathAndStayInStep) {
  const fs::path dir = test::scratch_dir();
  const std::vector<BadFile> bad = make_folder(dir / "data");
  std::string output;
  const int code = test::run_command(test::mpirun(2) + " " + (test::binary_dir() / "bin" / "sdtrain").string() +
                                         " --config " + config_for(dir, 100), &output);
  ASSERT_EQ(code, 0) << output;
  for (const auto& file : bad) {
    const std::size_t at = output.find(file.path + ":");
    EXPECT_NE(at, std::string::npos) << file.path << " is not logged:\n" << output;
    if (at == std::string::npos) continue;
    const std::string logged = output.substr(at, output.find('\n', at) - at);
    EXPECT_NE(logged.find(file.reason), std::string::npos) << logged;
    // Logged once, by the rank that met it (each rank logs what it skips).
    EXPECT_EQ(output.find(file.path + ":", at + 1), std::string::npos) << file.path << " logged twice:\n" << output;
  }
  // Every rank ran the 4 steps: the final checkpoint exists (written after all ranks' last step)
  // and each rank's log records step 4.
  EXPECT_TRUE(fs::exists(dir / "out" / "checkpoints" / "step-00000004" / "manifest.json")) << output;
  for (const char* log : {"rank-00000.log", "rank-00001.log"}) {
    std::ifstream in(dir / "out" / "logs" / log);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_NE(text.find("checkpoint written"), std::string::npos) << log << ":\n" << text;
  }
}

TEST(CorruptData, MoreBadSamplesThanAllowedStopTheJobWithTheReason) {
  const fs::path dir = test::scratch_dir();
  make_folder(dir / "data");
  std::string output;
  const int code = test::run_command(test::mpirun(2) + " " + (test::binary_dir() / "bin" / "sdtrain").string() +
                                         " --config " + config_for(dir, 1), &output);
  EXPECT_NE(code, 0) << output;
  EXPECT_NE(output.find("bad samples exceed data.bad_data.max_bad_samples=1"), std::string::npos) << output;
  EXPECT_FALSE(fs::exists(dir / "out" / "checkpoints" / "step-00000004")) << output;
}

}  // namespace
}  // namespace sdtrain

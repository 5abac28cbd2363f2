// `mpirun -np 2 sdtrain` on an image folder with bad data in it: truncated JPEG and PNG, a
// zero-byte file, a PNG whose header claims 100000 x 100000 pixels (refused before decoding), a
// row naming a missing file and a row without a caption. The run goes on per data.bad_data (each
// bad sample logged once with its path and the reason, replaced by the next good one), both ranks
// take every step, and past max_bad_samples the job stops with the reason instead of hanging;
// checkpoints keep each rank's bad samples, so a resumed run stops where the straight one does.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "framework/util/file_util.h"
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

/// The bad samples rank `rank` recorded in the checkpoint of `step` in dir/out.
std::set<std::string> recorded_bad_samples(const fs::path& dir, int step, int rank) {
  char name[64];
  std::snprintf(name, sizeof(name), "step-%08d/rank-%05d.json", step, rank);
  const auto file = nlohmann::json::parse(read_file((dir / "out" / "checkpoints" / name).string()));
  return file.at("parts").at("data").at("bad_samples").get<std::set<std::string>>();
}

/// One micro-batch per step, no worker threads and one batch of prefetch, so that a checkpoint
/// after step s has met the bad samples of micro-batches up to s + 1 only (the loader counts
/// what it prefetched: a resume meets those again anyway).
std::string sdtrain_command(const fs::path& dir, int max_bad_samples, const std::string& extra = "") {
  return test::mpirun(2) + " " + (test::binary_dir() / "bin" / "sdtrain").string() + " --config " +
         config_for(dir, max_bad_samples) +
         " --set gradient_accumulation_steps=1 --set data.num_workers=0 --set data.prefetch_batches=1 " + extra;
}

// A resumed run counts the bad samples met before the checkpoint: with a limit one below what a
// rank meets in the 4 steps, the straight run stops, and so does the run resumed from a
// checkpoint taken between that rank's bad samples.
TEST(CorruptData, TheBadSampleCountSurvivesAResume) {
  const fs::path scratch = test::scratch_dir();  // (each call empties the test's folder)
  const fs::path straight = scratch / "straight";
  make_folder(straight / "data");
  std::string output;
  ASSERT_EQ(test::run_command(sdtrain_command(straight, 100), &output), 0) << output;
  const std::set<std::string> met[2] = {recorded_bad_samples(straight, 4, 0), recorded_bad_samples(straight, 4, 1)};
  EXPECT_EQ(met[0].size() + met[1].size(), 6u) << "each bad row is met once, by one rank";
  std::set<std::string> names(met[0].begin(), met[0].end());
  names.insert(met[1].begin(), met[1].end());
  // Recorded by file name, also those the dataset refuses before decoding (missing, uncaptioned).
  EXPECT_EQ(names, (std::set<std::string>{"truncated.jpg", "empty.png", "bomb.png", "missing.png", "uncaptioned.png",
                                          "truncated.png"}));
  const int busiest = met[0].size() >= met[1].size() ? 0 : 1;
  const int limit = static_cast<int>(met[busiest].size()) - 1;
  const std::string expected = std::to_string(limit + 1) + " bad samples exceed data.bad_data.max_bad_samples=" +
                               std::to_string(limit);

  // Checkpoints after steps 1, 2 and 3; resume from one where the busiest rank had met some of
  // its bad samples but not all (else a count restarting at zero would pass or fail alike).
  const fs::path resumed = scratch / "resumed";
  make_folder(resumed / "data");
  ASSERT_EQ(test::run_command(
                sdtrain_command(resumed, 100, "--set run.max_steps=3 --set run.checkpoint_every_n_steps=1"), &output),
            0)
      << output;
  int resume_step = 0;
  for (int step = 1; step <= 3 && resume_step == 0; ++step) {
    const std::set<std::string> before = recorded_bad_samples(resumed, step, busiest);
    EXPECT_TRUE(std::includes(met[busiest].begin(), met[busiest].end(), before.begin(), before.end()));
    if (!before.empty() && before.size() < met[busiest].size()) resume_step = step;
  }
  ASSERT_NE(resume_step, 0) << "no checkpoint splits the busiest rank's bad samples";

  EXPECT_NE(test::run_command(sdtrain_command(straight, limit, "--set run.output_dir=out2"), &output), 0) << output;
  EXPECT_NE(output.find(expected), std::string::npos) << output;
  EXPECT_NE(test::run_command(sdtrain_command(resumed, limit,
                                              "--set run.max_steps=4 --set run.resume=" +
                                                  test::checkpoint_dir(resumed / "out", resume_step).string()),
                              &output),
            0)
      << output;
  EXPECT_NE(output.find(expected), std::string::npos) << output;
  EXPECT_NE(output.find("resumed from"), std::string::npos) << output;
}

}  // namespace
}  // namespace sdtrain

// AtomicFile: whole files or none, the overwrite refusal, and a (simulated) full disk failing the
// write with the system's reason while the file that was there stays as it was.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "framework/io/atomic_file.h"
#include "framework/util/file_util.h"
#include "sdtrain/errors.h"
#include "tests/common/test_env.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

/// Names in `dir`, sorted (temporaries included).
std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

/// The FormatError message of `write`, or "" when it succeeds.
template <class Write>
std::string error_of(Write write) {
  try {
    write();
  } catch (const FormatError& error) {
    return error.what();
  }
  return "";
}

TEST(AtomicFile, ReplacesWholeFilesAndRefusesToOverwriteWhenAsked) {
  const fs::path dir = test::scratch_dir();
  const std::string path = (dir / "state.json").string();
  write_file_atomic(path, "first");
  write_file_atomic(path, "second");
  EXPECT_EQ(read_file(path), "second");
  EXPECT_EQ(error_of([&] { write_file_atomic(path, "third", /*overwrite=*/false); }),
            path + ": already exists (refusing to overwrite)");
  EXPECT_EQ(read_file(path), "second");
  EXPECT_EQ(entries(dir), std::vector<std::string>{"state.json"});
}

TEST(AtomicFile, AFullDiskFailsTheWriteNamingTheFileAndKeepsWhatWasThere) {
  const fs::path dir = test::scratch_dir();
  const std::string small = (dir / "trainer_state.json").string();
  const std::string large = (dir / "model.safetensors").string();
  write_file_atomic(small, "step 2");
  write_file_atomic(large, "weights of step 2");
  {
    const ScopedFullDisk full_disk(true);
    EXPECT_EQ(error_of([&] { write_file_atomic(small, "step 4"); }),
              small + ": write failed: No space left on device");
    // A file larger than the write buffer fails in write(), before commit.
    EXPECT_EQ(error_of([&] {
                AtomicFile file(large);
                const std::string chunk(1 << 20, 'w');
                for (int i = 0; i < 8; ++i) file.write(chunk.data(), chunk.size());
                file.commit();
              }),
              large + ": write failed: No space left on device");
    // Nothing to write fails nothing, as on a real full disk.
    EXPECT_EQ(error_of([&] { write_file_atomic((dir / "empty").string(), ""); }), "");
  }
  EXPECT_EQ(read_file(small), "step 2");
  EXPECT_EQ(read_file(large), "weights of step 2");
  EXPECT_EQ(entries(dir), (std::vector<std::string>{"empty", "model.safetensors", "trainer_state.json"}))
      << "a temporary file was left behind";
  // The disk has room again once the scope ends; an inactive scope changes nothing.
  const ScopedFullDisk inactive(false);
  write_file_atomic(small, "step 4");
  EXPECT_EQ(read_file(small), "step 4");
}

}  // namespace
}  // namespace sdtrain

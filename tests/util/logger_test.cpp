// Where log lines go: the rank's log file takes every level, the console only its level and only
// on the ranks that print; a line that no destination takes writes nothing.
#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

#include "framework/log/logger.h"
#include "framework/util/file_util.h"
#include "tests/common/test_env.h"

namespace sdtrain {
namespace {

/// Restores the process default (rank 0, console at INFO, no file) after each test.
class LoggerTest : public ::testing::Test {
 protected:
  void TearDown() override { configure_logging(LogOptions{}); }
};

/// What logging `lines` (level, text, every_rank) under `options` prints on stderr.
std::string console_of(const LogOptions& options, const std::vector<std::tuple<LogLevel, std::string, bool>>& lines) {
  configure_logging(options);
  ::testing::internal::CaptureStderr();
  for (const auto& [level, text, every_rank] : lines) log_line(level, text, every_rank);
  return ::testing::internal::GetCapturedStderr();
}

TEST_F(LoggerTest, FileTakesEveryLevelConsoleOnlyItsOwn) {
  const auto file = test::scratch_dir() / "rank0.log";
  LogOptions options;
  options.console_level = LogLevel::WARNING;
  options.file = file.string();
  const std::string console =
      console_of(options, {{LogLevel::DEBUG, "a debug line", false}, {LogLevel::WARNING, "a warning", false}});
  EXPECT_EQ(console.find("a debug line"), std::string::npos) << console;
  EXPECT_NE(console.find(" W r0 a warning\n"), std::string::npos) << console;
  configure_logging(LogOptions{});  // closes the file
  const std::string logged = read_file(file.string());
  EXPECT_NE(logged.find(" D r0 a debug line\n"), std::string::npos) << logged;
  EXPECT_NE(logged.find(" W r0 a warning\n"), std::string::npos) << logged;
}

TEST_F(LoggerTest, OtherRanksPrintOnlyWhatEveryRankMustSee) {
  LogOptions options;
  options.rank = 3;
  options.world_size = 4;
  const std::string console =
      console_of(options, {{LogLevel::ERROR, "rank 0's business", false}, {LogLevel::WARNING, "a bad file", true}});
  EXPECT_EQ(console.find("rank 0's business"), std::string::npos) << console;
  EXPECT_NE(console.find(" W r3 a bad file\n"), std::string::npos) << console;
}

TEST_F(LoggerTest, LinesBelowTheConsoleLevelWithoutAFilePrintNothing) {
  LogOptions options;
  options.console_level = LogLevel::ERROR;
  EXPECT_EQ(console_of(options, {{LogLevel::INFO, "info", false}, {LogLevel::WARNING, "warning", true}}), "");
  EXPECT_NE(console_of(options, {{LogLevel::ERROR, "an error", false}}).find(" E r0 an error\n"), std::string::npos);
}

}  // namespace
}  // namespace sdtrain

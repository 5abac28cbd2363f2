#include "framework/log/logger.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <mutex>

namespace sdtrain {
namespace {
std::mutex g_mutex;
LogOptions g_options;
std::ofstream g_file;

const char* level_letter(LogLevel level) {
  switch (level) {
    case LogLevel::DEBUG: return "D";
    case LogLevel::INFO: return "I";
    case LogLevel::WARNING: return "W";
    case LogLevel::ERROR: return "E";
  }
  return "?";
}

std::string timestamp() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm local{};
  localtime_r(&seconds, &local);
  char buffer[40];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%d %H:%M:%S", &local);
  char out[48];
  std::snprintf(out, sizeof(out), "%s.%03d", buffer, static_cast<int>(millis));
  return out;
}
}  // namespace

void configure_logging(const LogOptions& options) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_options = options;
  if (g_file.is_open()) g_file.close();
  if (!options.file.empty()) g_file.open(options.file, std::ios::app);
}

bool stderr_is_terminal() { return isatty(STDERR_FILENO) == 1; }

void log_line(LogLevel level, const std::string& message, bool every_rank) {
  std::lock_guard<std::mutex> lock(g_mutex);
  const bool this_rank_prints = g_options.rank == 0 || every_rank || g_options.all_ranks_to_console;
  const bool to_console = this_rank_prints && level >= g_options.console_level;
  // A line no one reads is not formatted: a reader warning per bad sample costs a clock read and
  // a localtime_r otherwise, on every rank that does not print it.
  if (!to_console && !g_file.is_open()) return;
  const std::string line = timestamp() + " " + level_letter(level) + " r" +
                           std::to_string(g_options.rank) + " " + message + "\n";
  if (g_file.is_open()) {
    g_file << line;
    g_file.flush();
  }
  if (to_console) {
    std::cerr << line;
    std::cerr.flush();
  }
}

}  // namespace sdtrain

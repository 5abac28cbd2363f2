#pragma once
/// Rank-aware logging for plugins and the framework: levels, timestamps, rank 0 on the console by
/// default, every rank to its own file (the framework configures where lines go).
///
///   SDTRAIN_LOG(INFO) << "step " << step;          // console on rank 0 (all ranks if asked)
///   SDTRAIN_LOG_ALL_RANKS(WARNING) << "bad file";   // console on every rank
///
/// Lines look like "2026-11-25 15:42:07.123 I r0 message". Thread-safe.
#include <sstream>
#include <string>

namespace sdtrain {

enum class LogLevel { DEBUG = 0, INFO = 1, WARNING = 2, ERROR = 3 };

/// Writes one line. `every_rank` prints on the console of every rank, not only rank 0.
void log_line(LogLevel level, const std::string& message, bool every_rank = false);

/// True when standard error is a terminal (progress bars) rather than a file or pipe.
bool stderr_is_terminal();

/// Collects one streamed line and writes it on destruction.
class LogMessage {
 public:
  LogMessage(LogLevel level, bool every_rank) : level_(level), every_rank_(every_rank) {}
  ~LogMessage() { log_line(level_, stream_.str(), every_rank_); }
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostringstream& stream() { return stream_; }

 private:
  LogLevel level_;
  bool every_rank_;
  std::ostringstream stream_;
};

}  // namespace sdtrain

#define SDTRAIN_LOG(level) ::sdtrain::LogMessage(::sdtrain::LogLevel::level, false).stream()
#define SDTRAIN_LOG_ALL_RANKS(level) ::sdtrain::LogMessage(::sdtrain::LogLevel::level, true).stream()

#pragma once
/// A progress display: a redrawn bar on a terminal, plain periodic log lines otherwise (CI,
/// Slurm logs), so logs stay readable either way.
#include <chrono>
#include <cstdint>
#include <string>

namespace sdtrain {

class ProgressBar {
 public:
  /// `total` steps (0 = unknown). On a non-terminal, a line is logged at most every
  /// `plain_interval_s` seconds (and at the end). `enabled` false makes every call a no-op
  /// (ranks other than 0).
  ProgressBar(int64_t total, std::string label, bool enabled = true, double plain_interval_s = 30.0);
  ~ProgressBar();

  /// Reports that `current` steps are done; `status` is appended (e.g. "loss 0.123 lr 1e-4").
  void update(int64_t current, const std::string& status = "");
  /// Final draw and newline.
  void finish();

  /// The text of one bar line, e.g. "train [#####     ] 50/100 1.2 it/s eta 0:00:41 | loss 0.1".
  /// Exposed for tests.
  static std::string render(const std::string& label, int64_t current, int64_t total,
                            double rate_per_s, const std::string& status, int width = 24);

 private:
  int64_t total_;
  std::string label_;
  bool enabled_;
  bool terminal_;
  double plain_interval_s_;
  bool finished_ = false;
  int64_t current_ = 0;
  std::string status_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

/// "1:02:03" / "2:03".
std::string format_duration(double seconds);

}  // namespace sdtrain

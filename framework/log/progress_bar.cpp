#include "framework/log/progress_bar.h"

#include <cmath>
#include <cstdio>
#include <iostream>

#include "framework/log/logger.h"

namespace sdtrain {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto total = static_cast<int64_t>(seconds + 0.5);
  char out[32];
  if (total >= 3600) {
    std::snprintf(out, sizeof(out), "%lld:%02lld:%02lld", static_cast<long long>(total / 3600),
                  static_cast<long long>(total / 60 % 60), static_cast<long long>(total % 60));
  } else {
    std::snprintf(out, sizeof(out), "%lld:%02lld", static_cast<long long>(total / 60),
                  static_cast<long long>(total % 60));
  }
  return out;
}

ProgressBar::ProgressBar(int64_t total, std::string label, bool enabled, double plain_interval_s)
    : total_(total),
      label_(std::move(label)),
      enabled_(enabled),
      terminal_(stderr_is_terminal()),
      plain_interval_s_(plain_interval_s),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressBar::~ProgressBar() {
  if (!finished_) finish();
}

std::string ProgressBar::render(const std::string& label, int64_t current, int64_t total,
                                double rate_per_s, const std::string& status, int width) {
  std::string line = label + " ";
  if (total > 0) {
    const double fraction = std::min(1.0, static_cast<double>(current) / static_cast<double>(total));
    const int filled = static_cast<int>(fraction * width);
    line += "[" + std::string(filled, '#') + std::string(width - filled, ' ') + "] ";
    line += std::to_string(current) + "/" + std::to_string(total);
  } else {
    line += std::to_string(current);
  }
  char rate[32];
  std::snprintf(rate, sizeof(rate), " %.2f it/s", rate_per_s);
  line += rate;
  if (total > 0 && rate_per_s > 0) {
    line += " eta " + format_duration(static_cast<double>(total - current) / rate_per_s);
  }
  if (!status.empty()) line += " | " + status;
  return line;
}

void ProgressBar::update(int64_t current, const std::string& status) {
  if (!enabled_) return;
  current_ = current;
  status_ = status;
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double since_draw = std::chrono::duration<double>(now - last_draw_).count();
  const double rate = elapsed > 0 ? static_cast<double>(current) / elapsed : 0.0;
  if (terminal_) {
    if (since_draw < 0.1 && current != total_) return;
    std::cerr << "\r" << render(label_, current, total_, rate, status) << "\033[K" << std::flush;
  } else {
    if (since_draw < plain_interval_s_ && current != total_) return;
    log_line(LogLevel::INFO, render(label_, current, total_, rate, status));
  }
  last_draw_ = now;
}

void ProgressBar::finish() {
  if (finished_) return;
  finished_ = true;
  if (!enabled_) return;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(current_) / elapsed : 0.0;
  if (terminal_) {
    std::cerr << "\r" << render(label_, current_, total_, rate, status_) << "\033[K\n" << std::flush;
  } else {
    log_line(LogLevel::INFO, render(label_, current_, total_, rate, status_) + " (done in " +
                                 format_duration(elapsed) + ")");
  }
}

}  // namespace sdtrain

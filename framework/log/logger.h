#pragma once
/// Where log lines go: the framework configures it once per process (sdtrain/log.h writes them).
#include <string>

#include "sdtrain/log.h"

namespace sdtrain {

struct LogOptions {
  int rank = 0;
  int world_size = 1;
  LogLevel console_level = LogLevel::INFO;
  /// Every rank prints to the console (otherwise only rank 0 does).
  bool all_ranks_to_console = false;
  /// When not empty, this rank also appends every line (all levels >= DEBUG) to this file.
  std::string file;
};

/// (Re)configures logging for this process. Before it is called, the process logs as rank 0 to
/// the console at INFO.
void configure_logging(const LogOptions& options);

}  // namespace sdtrain

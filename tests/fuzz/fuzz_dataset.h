#pragma once
// What the dataset fuzz targets share: the input written to a file of this process (the readers
// take paths, as the product gives them), and every sample of a dataset plugin read.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "framework/log/logger.h"
#include "sdtrain/errors.h"
#include "tests/data/dataset_support.h"

namespace sdtrain::fuzz {

/// Writes the fuzzer's bytes to <dir>/sdtrain-fuzz-<pid><extension> (one file per process,
/// rewritten for every input, removed when the process exits normally) and returns its path. <dir>
/// is /dev/shm where it is writable: on a disk file system the truncate, write-back and block
/// discards of every rewrite took a fifth of the parquet target's time; /tmp otherwise. A process
/// uses one extension (each target is its own executable).
inline std::string write_input(const std::string& extension, const std::uint8_t* data, std::size_t size) {
  struct InputFile {
    std::string path;
    ~InputFile() { ::unlink(path.c_str()); }
  };
  static const InputFile file{(::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") +
                              std::string("/sdtrain-fuzz-") + std::to_string(::getpid()) + extension};
  std::ofstream out(file.path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return file.path;
}

/// Builds dataset plugin `type` with `options` and reads every sample; the errors bad data is
/// documented to raise (ConfigError when building, DataError per sample) are caught.
/// Warnings (a broken shard, a skipped sample) are not printed: one per input filled the log at
/// 50 MB a minute; errors still are.
inline void read_every_sample(const std::string& type, const google::protobuf::Message& options) {
  static const bool quiet = [] {
    LogOptions log;
    log.console_level = LogLevel::ERROR;
    configure_logging(log);
    return true;
  }();
  (void)quiet;
  try {
    const auto dataset = testing::make_dataset(type, options);
    for (std::size_t i = 0; i < dataset->size(); ++i) testing::data_error(*dataset, i);
  } catch (const ConfigError&) {
  }
}

}  // namespace sdtrain::fuzz

#pragma once
/// Exception types thrown at sdtrain's boundaries. Each message names the file, field or line at
/// fault and what was expected; the tools print it and exit with the code documented per type.
#include <stdexcept>
#include <string>

namespace sdtrain {

/// A config file, command-line override or plugin option is wrong. Tools exit with code 2.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A plugin library could not be loaded (missing file, missing symbol, version mismatch).
class PluginError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One data sample is unreadable (missing, corrupt, truncated, too large). The data pipeline
/// skips it under the bad-data policy; the message names the sample's path or key.
class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A weights or checkpoint file is malformed or fails verification; the message names the file
/// (and the tensor or entry where one is at fault).
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace sdtrain

#pragma once
/// Exception types thrown at sdtrain's boundaries. Each message names the file, field or line at
/// fault and what was expected; the tools print it and exit with the code documented per type.
#include <stdexcept>
#include <string>
#include <utility>

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
  /// `sample_key`: the Sample::key of the sample at fault, for a dataset whose get() fails before
  /// it can return the sample; the bad-data policy then records the sample by it (in checkpoints)
  /// rather than by its index.
  DataError(const std::string& message, std::string sample_key)
      : std::runtime_error(message), sample_key_(std::move(sample_key)) {}
  /// The key given at construction; empty when none was.
  const std::string& sample_key() const { return sample_key_; }

 private:
  std::string sample_key_;
};

/// A weights or checkpoint file is malformed or fails verification; the message names the file
/// (and the tensor or entry where one is at fault).
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace sdtrain

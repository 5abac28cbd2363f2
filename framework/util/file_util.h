#pragma once
/// File helpers: syncing, reading and hashing files (atomic writes: framework/io/atomic_file.h).
#include <cstdint>
#include <stdexcept>
#include <string>

namespace sdtrain {

/// fsync()s a file or directory by path. Throws std::runtime_error naming it.
void fsync_path(const std::string& path);

/// Reads the whole file at `path` into `bytes` (binary-exact; also pipes and files whose size the
/// system does not report). On failure returns false and sets `error` to
/// "<path>: cannot read: <reason>", the reason being the system's ("No such file or directory",
/// "Is a directory", "Permission denied", ...).
bool try_read_file(const std::string& path, std::string& bytes, std::string& error);

/// The tree's one whole-file reader: try_read_file, throwing `Error` with its message on failure.
/// `Error` is the exception type the caller's contract promises (DataError for a data sample,
/// ConfigError for a config, FormatError for weights); std::runtime_error by default.
template <class Error = std::runtime_error>
std::string read_file(const std::string& path) {
  std::string bytes, error;
  if (!try_read_file(path, bytes, error)) throw Error(error);
  return bytes;
}

/// Whether folder `path` exists or could be created (as mkdir -p) by this process, checked without
/// creating anything, so that a tool refuses an output folder it cannot write before it does any
/// work: the nearest existing ancestor (`path` itself when it exists) must be a folder this
/// process may write into. On false, `error` says why, naming that ancestor as a prefix of `path`:
/// "<ancestor> is not a folder" or "<ancestor>: Permission denied".
bool folder_is_creatable(const std::string& path, std::string& error);

/// Lower-case hex SHA-256 of a file's contents (streamed, constant memory). Throws
/// std::runtime_error naming the path.
std::string sha256_file(const std::string& path);

/// Lower-case hex SHA-256 of a byte string.
std::string sha256_hex(const std::string& bytes);

}  // namespace sdtrain

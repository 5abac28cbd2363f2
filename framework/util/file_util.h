#pragma once
/// File helpers: syncing, reading and hashing files (atomic writes: framework/io/atomic_file.h).
#include <cstdint>
#include <string>

namespace sdtrain {

/// fsync()s a file or directory by path. Throws std::runtime_error naming it.
void fsync_path(const std::string& path);

/// Reads a whole file. Throws std::runtime_error naming the path.
std::string read_file(const std::string& path);

/// Lower-case hex SHA-256 of a file's contents (streamed, constant memory). Throws
/// std::runtime_error naming the path.
std::string sha256_file(const std::string& path);

/// Lower-case hex SHA-256 of a byte string.
std::string sha256_hex(const std::string& bytes);

}  // namespace sdtrain

#pragma once
/// Writes zip archives the way torch.save does: stored entries, data aligned to 64 bytes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "framework/io/atomic_file.h"

namespace sdtrain {

/// Appends uncompressed ("stored") entries to an AtomicFile, each entry's data starting on a
/// 64-byte boundary (padding in a local-header extra field tagged "FB", as PyTorch's writer
/// does, so readers can map tensors in place), with CRC-32s, switching to zip64 records for
/// sizes or offsets beyond 4 GiB and for more than 65535 entries. finish() writes the central
/// directory; the caller then commits the file.
class ZipWriter {
 public:
  /// Data alignment in bytes.
  static constexpr std::uint64_t kAlignment = 64;

  explicit ZipWriter(AtomicFile& out) : out_(out) {}
  /// Adds entry `name` holding `size` bytes at `data`.
  void add(const std::string& name, const void* data, std::uint64_t size);
  /// Writes the central directory and end records.
  void finish();

 private:
  struct Record {
    std::string name;
    std::uint64_t offset;
    std::uint64_t size;
    std::uint32_t crc;
  };
  AtomicFile& out_;
  std::vector<Record> records_;
  bool finished_ = false;
};

}  // namespace sdtrain

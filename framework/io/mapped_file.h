#pragma once
/// A whole file mapped into memory, shared by the tensors that view it.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace sdtrain {

/// Maps a file copy-on-write: the file is opened read-only and is never modified, but the pages
/// are private and writable (MAP_PRIVATE, PROT_READ | PROT_WRITE), so a tensor that views the
/// mapping may be changed in place without touching the file; only pages actually written cost
/// memory. Unmapped when the last shared_ptr (held by every tensor viewing it) goes away.
class MappedFile {
 public:
  /// Opens and maps `path`. Throws FormatError naming the file when it cannot be opened or mapped.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  /// First byte of the mapping (nullptr for an empty file).
  const std::uint8_t* data() const { return data_; }
  /// Writable (private, copy-on-write) view of the same bytes.
  std::uint8_t* mutable_data() const { return data_; }
  /// File size in bytes.
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, std::uint8_t* data, std::size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace sdtrain

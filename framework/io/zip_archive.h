#pragma once
/// Reads zip archives such as torch.save's, with stored entries viewed in place.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "framework/io/mapped_file.h"

struct zip;
struct zip_stat;

namespace sdtrain {

/// A zip archive opened through a memory mapping. libzip opens and checks the archive
/// (consistency of local and central headers); entries stored uncompressed (torch.save stores
/// everything so) are then read in place from the mapping, without copying, by their data
/// offset; compressed entries are inflated into memory by libzip. Zip64 is supported.
/// Errors throw FormatError naming the file and entry.
class ZipArchive {
 public:
  /// Bytes of one entry. `data` stays valid while `owner` (a hold on the mapping, see
  /// MappedFile::hold, or a buffer) is held.
  struct Entry {
    std::uint8_t* data = nullptr;  ///< writable: a private copy-on-write page or an owned buffer
    std::uint64_t size = 0;
    std::shared_ptr<void> owner;
  };

  explicit ZipArchive(const std::string& path);
  ~ZipArchive();
  ZipArchive(const ZipArchive&) = delete;
  ZipArchive& operator=(const ZipArchive&) = delete;

  const std::string& path() const { return file_->path(); }
  /// Entry names in archive order.
  const std::vector<std::string>& names() const { return names_; }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  /// Uncompressed size of `name`.
  std::uint64_t size(const std::string& name) const;
  /// The bytes of `name` (a view for stored entries). With verify_crc the CRC-32 is checked.
  Entry read(const std::string& name, bool verify_crc = false) const;

 private:
  struct Info {
    std::uint64_t libzip_index = 0;
    std::uint64_t size = 0;
    std::uint64_t compressed_size = 0;
    std::uint32_t crc = 0;
    bool stored = false;
    std::uint64_t data_offset = 0;  ///< file offset of the data (stored entries)
    bool located = false;           ///< data_offset was found and checked against the file size
  };
  const Info& info(const std::string& name) const;
  /// Lists the entries (names_, index_) and where stored ones start; throws FormatError.
  void index_entries(const std::string& path);
  /// Refuses an entry that cannot be read within what it declares; throws FormatError.
  void check_entry(const std::string& path, const std::string& name, const zip_stat& st) const;
  void locate_stored_data();

  std::shared_ptr<MappedFile> file_;
  zip* archive_ = nullptr;
  mutable std::mutex mutex_;  // libzip handles are not thread-safe
  std::vector<std::string> names_;
  std::unordered_map<std::string, Info> index_;
};

}  // namespace sdtrain

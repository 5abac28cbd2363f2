#pragma once
/// A whole file mapped into memory, shared by the tensors that view it.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace sdtrain {

/// Maps a file copy-on-write: the file is opened read-only and is never modified, but the pages
/// are private and writable (MAP_PRIVATE, PROT_READ | PROT_WRITE), so a tensor that views the
/// mapping may be changed in place without touching the file; only pages actually written cost
/// memory. Unmapped when the last shared_ptr (the readers' and every hold's) goes away.
///
/// Views of the mapping take a hold on their bytes (hold()). When the last hold on a page goes,
/// the page leaves the process's resident memory at once (madvise MADV_DONTNEED) instead of when
/// the whole file is unmapped: a 4 GB weights file whose tensors are copied into training buffers
/// one by one, while a few of its tensors stay viewed for the whole run (a frozen encoder), would
/// otherwise keep every page it was read through resident beside the copies until the kernel
/// needs the memory — counted in the process's RSS, which is what a batch system's memory limit
/// and GNU time measure. Thread-safe: holds may be taken and dropped from any thread.
class MappedFile : public std::enable_shared_from_this<MappedFile> {
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

  /// A hold on the `size` bytes at `begin` (inside the mapping; std::out_of_range otherwise) for
  /// a view of them, such as a tensor's storage: the returned owner keeps the mapping mapped.
  /// When it is released, every page it covered that no other live hold covers is given back;
  /// reading such a page again reads the file, so what a view wrote into its private copy goes
  /// with the view's last hold. Bytes read through data() without a hold (headers, directories)
  /// are never given back before the unmapping, and stay readable after it as the file's bytes.
  std::shared_ptr<void> hold(const std::uint8_t* begin, std::size_t size);

 private:
  using Holds = std::multimap<std::size_t, std::size_t>;  ///< offset of each live hold -> its end
  MappedFile(std::string path, std::uint8_t* data, std::size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  /// Ends one hold and gives back the pages it alone covered.
  void release(Holds::iterator hold);

  std::string path_;
  std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  std::mutex mutex_;
  Holds holds_;
};

}  // namespace sdtrain

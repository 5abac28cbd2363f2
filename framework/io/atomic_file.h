#pragma once
/// Writes a file so that readers see either the old file or the complete new one, never a part.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace sdtrain {

/// The one way sdtrain writes a file that readers may see: bytes stream into a temporary file next
/// to `path` (same directory, so the final rename stays on one file system); commit() flushes,
/// fsyncs, renames it onto `path` and fsyncs the directory.
/// Destroying an uncommitted AtomicFile (an exception while writing) deletes the temporary, so
/// `path` is never left half-written. Errors throw FormatError naming `path`.
class AtomicFile {
 public:
  /// Creates the temporary file. With overwrite == false, an existing `path` is refused here and
  /// again at commit (atomically, with link(2)), so a concurrent writer is never clobbered.
  explicit AtomicFile(std::string path, bool overwrite = true);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  /// Appends `size` bytes (buffered).
  void write(const void* data, std::size_t size);
  /// Bytes written so far (the offset of the next byte).
  std::uint64_t offset() const { return offset_; }
  /// Makes the file visible at `path`. Afterwards the object holds nothing.
  void commit();
  const std::string& path() const { return path_; }

 private:
  void flush_buffer();
  void fail(const std::string& what);
  std::string path_;
  std::string temp_path_;
  bool overwrite_;
  int fd_ = -1;
  std::uint64_t offset_ = 0;
  std::string buffer_;
};

/// A simulated full disk, for rehearsals (the fault point checkpoint.write's `enospc` action,
/// framework/util/fault_points.h): while an active ScopedFullDisk lives, every AtomicFile write
/// that has bytes to write, on any thread, fails as write(2) does on a full disk (errno ENOSPC,
/// "No space left on device") through the same error path. Scopes nest; an inactive one does
/// nothing.
class ScopedFullDisk {
 public:
  explicit ScopedFullDisk(bool active);
  ~ScopedFullDisk();
  ScopedFullDisk(const ScopedFullDisk&) = delete;
  ScopedFullDisk& operator=(const ScopedFullDisk&) = delete;

 private:
  bool active_;
};

/// Writes `bytes` to `path` through an AtomicFile (the whole file at once, for small files such as
/// JSON, text and PNGs). Same errors and `overwrite` meaning as AtomicFile.
void write_file_atomic(const std::string& path, const std::string& bytes, bool overwrite = true);

/// Creates folder `path` complete or not at all: `fill` writes its files into a temporary sibling
/// folder (its argument), which is then renamed onto `path` and the parent fsynced. `fill` must
/// make its files durable itself (AtomicFile does). An existing `path` is never overwritten
/// (FormatError naming it); on any error the temporary folder is removed and the error rethrown
/// (file-system errors as FormatError naming `path`).
void write_folder_atomic(const std::string& path, const std::function<void(const std::string& temp)>& fill);

}  // namespace sdtrain

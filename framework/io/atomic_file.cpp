#include "framework/io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

#include "framework/util/file_util.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

constexpr std::size_t kBufferSize = 4 << 20;

/// Active ScopedFullDisk objects.
std::atomic<int> full_disk_scopes{0};

std::string directory_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

AtomicFile::AtomicFile(std::string path, bool overwrite) : path_(std::move(path)), overwrite_(overwrite) {
  struct stat st {};
  if (!overwrite_ && ::lstat(path_.c_str(), &st) == 0) {
    throw FormatError(path_ + ": already exists (refusing to overwrite)");
  }
  std::random_device rd;
  for (int attempt = 0; attempt < 16 && fd_ < 0; ++attempt) {
    temp_path_ = path_ + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(rd() % 1000000);
    fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ < 0 && errno != EEXIST) break;
  }
  if (fd_ < 0) {
    throw FormatError(path_ + ": cannot create temporary file " + temp_path_ + ": " + std::strerror(errno));
  }
  buffer_.reserve(kBufferSize);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(temp_path_.c_str());
  }
}

void AtomicFile::fail(const std::string& what) {
  const std::string message = path_ + ": " + what + ": " + std::strerror(errno);
  ::close(fd_);
  ::unlink(temp_path_.c_str());
  fd_ = -1;
  throw FormatError(message);
}

void AtomicFile::flush_buffer() {
  std::size_t done = 0;
  while (done < buffer_.size()) {
    if (full_disk_scopes.load(std::memory_order_relaxed) > 0) {
      errno = ENOSPC;
      fail("write failed");
    }
    ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write failed");
    }
    done += static_cast<std::size_t>(n);
  }
  buffer_.clear();
}

void AtomicFile::write(const void* data, std::size_t size) {
  if (fd_ < 0) throw FormatError(path_ + ": write after commit");
  const char* bytes = static_cast<const char*>(data);
  offset_ += size;
  while (size > 0) {
    const std::size_t room = kBufferSize - buffer_.size();
    const std::size_t n = size < room ? size : room;
    buffer_.append(bytes, n);
    bytes += n;
    size -= n;
    if (buffer_.size() == kBufferSize) flush_buffer();
  }
}

void AtomicFile::commit() {
  if (fd_ < 0) throw FormatError(path_ + ": commit twice");
  flush_buffer();
  if (::fsync(fd_) != 0) fail("fsync failed");
  if (::close(fd_) != 0) {
    fd_ = -1;
    const std::string message = path_ + ": close failed: " + std::strerror(errno);
    ::unlink(temp_path_.c_str());
    throw FormatError(message);
  }
  fd_ = -1;
  if (overwrite_) {
    if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
      const std::string message = path_ + ": rename from " + temp_path_ + " failed: " + std::strerror(errno);
      ::unlink(temp_path_.c_str());
      throw FormatError(message);
    }
  } else {
    // link(2) fails with EEXIST instead of replacing: no window where another file is clobbered.
    if (::link(temp_path_.c_str(), path_.c_str()) != 0) {
      const int err = errno;
      ::unlink(temp_path_.c_str());
      throw FormatError(path_ + (err == EEXIST ? ": already exists (refusing to overwrite)"
                                               : ": link failed: " + std::string(std::strerror(err))));
    }
    ::unlink(temp_path_.c_str());
  }
  int dir = ::open(directory_of(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);  // best effort: makes the rename durable
    ::close(dir);
  }
}

ScopedFullDisk::ScopedFullDisk(bool active) : active_(active) {
  if (active_) full_disk_scopes.fetch_add(1);
}

ScopedFullDisk::~ScopedFullDisk() {
  if (active_) full_disk_scopes.fetch_sub(1);
}

void write_file_atomic(const std::string& path, const std::string& bytes, bool overwrite) {
  AtomicFile file(path, overwrite);
  file.write(bytes.data(), bytes.size());
  file.commit();
}

void write_folder_atomic(const std::string& path, const std::function<void(const std::string& temp)>& fill) {
  namespace fs = std::filesystem;
  const fs::path target = fs::absolute(path).lexically_normal();
  if (fs::exists(target)) throw FormatError(path + ": exists; refusing to overwrite it");
  const fs::path temp = target.parent_path() / ("." + target.filename().string() + ".tmp-" + std::to_string(getpid()));
  try {
    fs::remove_all(temp);
    fs::create_directories(temp);
    fill(temp.string());
    // Checked again: another writer may have created it meanwhile (rename(2) would replace an
    // empty folder).
    if (fs::exists(target)) throw FormatError(path + ": exists; refusing to overwrite it");
    fs::rename(temp, target);
    fsync_path(target.parent_path().string());
  } catch (const fs::filesystem_error& error) {
    std::error_code ignored;
    fs::remove_all(temp, ignored);
    throw FormatError(path + ": cannot write the folder: " + error.what());
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(temp, ignored);
    throw;
  }
}

}  // namespace sdtrain

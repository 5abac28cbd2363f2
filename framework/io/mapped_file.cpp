#include "framework/io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "sdtrain/errors.h"

namespace sdtrain {

namespace {

std::size_t page_size() {
  static const auto size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

std::size_t page_floor(std::size_t offset) { return offset / page_size() * page_size(); }
std::size_t page_ceil(std::size_t offset) { return page_floor(offset + page_size() - 1); }

}  // namespace

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw FormatError(path + ": cannot open: " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    int err = errno;
    ::close(fd);
    throw FormatError(path + ": not a regular file" + (err ? std::string(": ") + std::strerror(err) : ""));
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  void* data = nullptr;
  if (size > 0) {
    data = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (data == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      throw FormatError(path + ": cannot map " + std::to_string(size) + " bytes: " + std::strerror(err));
    }
  }
  ::close(fd);  // the mapping keeps the file referenced
  return std::shared_ptr<MappedFile>(new MappedFile(path, static_cast<std::uint8_t*>(data), size));
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) {
    ::munmap(data_, size_);
  }
}

std::shared_ptr<void> MappedFile::hold(const std::uint8_t* begin, std::size_t size) {
  if (data_ == nullptr || begin < data_ || static_cast<std::size_t>(begin - data_) > size_ ||
      size > size_ - static_cast<std::size_t>(begin - data_)) {
    throw std::out_of_range(path_ + ": a hold on " + std::to_string(size) + " bytes outside the mapping");
  }
  const auto offset = static_cast<std::size_t>(begin - data_);
  Holds::iterator it;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    it = holds_.emplace(offset, offset + size);
  }
  return std::shared_ptr<void>(data_ + offset, [self = shared_from_this(), it](void*) { self->release(it); });
}

void MappedFile::release(Holds::iterator hold) {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::size_t begin = page_floor(hold->first);
  const std::size_t end = hold->second > hold->first ? page_ceil(hold->second) : begin;
  holds_.erase(hold);
  if (begin == end) return;
  // The pages other live holds touch stay: a neighbour sharing a boundary page, an overlapping
  // view of the same bytes (holds are few, a few thousand tensors per file: a scan is enough).
  // holds_ is ordered by offset, so the kept pages come in order and the gaps between them go.
  std::size_t from = begin;
  for (auto other = holds_.begin(); other != holds_.end() && other->first < end; ++other) {
    if (other->second <= other->first || other->second <= begin) continue;
    const std::size_t kept_begin = page_floor(other->first);  // < end: end is a page boundary
    if (kept_begin > from) ::madvise(data_ + from, kept_begin - from, MADV_DONTNEED);
    from = std::max(from, page_ceil(other->second));
    if (from >= end) return;
  }
  // Advice only: should the kernel refuse it, the pages stay until the unmapping, as before.
  ::madvise(data_ + from, end - from, MADV_DONTNEED);
}

}  // namespace sdtrain

#include "framework/util/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <vector>

#include <openssl/evp.h>

namespace sdtrain {
namespace fs = std::filesystem;

namespace {
std::string errno_text() { return std::strerror(errno); }

std::string to_hex(const unsigned char* digest, unsigned int length) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < length; ++i) {
    out += digits[digest[i] >> 4];
    out += digits[digest[i] & 15];
  }
  return out;
}

class Sha256 {
 public:
  Sha256() : context_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(context_, EVP_sha256(), nullptr); }
  ~Sha256() { EVP_MD_CTX_free(context_); }
  void update(const void* data, std::size_t size) { EVP_DigestUpdate(context_, data, size); }
  std::string hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_DigestFinal_ex(context_, digest, &length);
    return to_hex(digest, length);
  }

 private:
  EVP_MD_CTX* context_;
};
}  // namespace

void fsync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw std::runtime_error("cannot open " + path + " to sync it: " + errno_text());
  const int result = ::fsync(fd);
  ::close(fd);
  if (result != 0) throw std::runtime_error("fsync failed for " + path + ": " + errno_text());
}

bool try_read_file(const std::string& path, std::string& bytes, std::string& error) {
  bytes.clear();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = path + ": cannot read: " + errno_text();
    return false;
  }
  struct stat st {};
  // Regular files are read into a buffer of their size at once; others (pipes) grow as they come.
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) bytes.reserve(static_cast<std::size_t>(st.st_size));
  char buffer[1 << 16];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      error = path + ": cannot read: " + errno_text();
      ::close(fd);
      bytes.clear();
      return false;
    }
    bytes.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return true;
}

bool folder_is_creatable(const std::string& path, std::string& error) {
  fs::path existing = path.empty() ? fs::path(".") : fs::path(path);
  std::error_code status_error;
  while (!fs::exists(existing, status_error)) {
    existing = existing.has_parent_path() && existing.parent_path() != existing ? existing.parent_path() : fs::path(".");
  }
  if (!fs::is_directory(existing)) {
    error = existing.string() + " is not a folder";
    return false;
  }
  if (::access(existing.c_str(), W_OK | X_OK) != 0) {
    error = existing.string() + ": " + errno_text();
    return false;
  }
  return true;
}

std::string sha256_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path + ": " + errno_text());
  Sha256 hash;
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    hash.update(buffer.data(), static_cast<std::size_t>(in.gcount()));
  }
  return hash.hex();
}

std::string sha256_hex(const std::string& bytes) {
  Sha256 hash;
  hash.update(bytes.data(), bytes.size());
  return hash.hex();
}

}  // namespace sdtrain

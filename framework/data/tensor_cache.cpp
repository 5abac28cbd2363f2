#include "framework/data/tensor_cache.h"

#include <filesystem>
#include <system_error>

#include "framework/io/safetensors.h"
#include "framework/log/logger.h"
#include "framework/util/file_util.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

namespace fs = std::filesystem;

constexpr const char* kValue = "value";
constexpr const char* kKeyHash = "sdtrain.cache.key_sha256";
constexpr const char* kContentHash = "sdtrain.cache.value_sha256";

std::string tensor_bytes_sha256(const torch::Tensor& contiguous_cpu) {
  const auto* bytes = static_cast<const char*>(contiguous_cpu.data_ptr());
  return sha256_hex(std::string(bytes, bytes + contiguous_cpu.numel() * contiguous_cpu.element_size()));
}

/// "12 MB", or "8 KB" below a megabyte (small limits appear in tests and tiny runs).
std::string size_text(int64_t bytes) {
  return bytes >= 1024 * 1024 ? std::to_string(bytes / (1024 * 1024)) + " MB" : std::to_string(bytes / 1024) + " KB";
}

}  // namespace

TensorCache::TensorCache(std::string dir, const std::string& dir_option, int64_t max_memory_bytes,
                         std::string limit_option)
    : dir_(std::move(dir)), max_memory_bytes_(max_memory_bytes), limit_option_(std::move(limit_option)) {
  if (dir_.empty()) return;
  std::error_code error;
  fs::create_directories(dir_, error);
  if (error || !fs::is_directory(dir_)) {
    throw ConfigError(dir_option + ": cannot create the cache directory " + dir_ + ": " +
                      (error ? error.message() : "not a directory"));
  }
}

std::string TensorCache::path_for(const std::string& key) const {
  if (dir_.empty()) return "";
  const std::string hash = sha256_hex(key);
  return (fs::path(dir_) / hash.substr(0, 2) / (hash + ".safetensors")).string();
}

int64_t TensorCache::memory_bytes() const {
  std::shared_lock<std::shared_mutex> lock(mutex_);
  return memory_bytes_;
}

std::size_t TensorCache::memory_entries() const {
  std::shared_lock<std::shared_mutex> lock(mutex_);
  return memory_.size();
}

torch::Tensor TensorCache::get(const std::string& key) const {
  if (dir_.empty()) {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    const auto found = memory_.find(key);
    return found == memory_.end() ? torch::Tensor() : found->second;
  }
  const std::string path = path_for(key);
  std::error_code error;
  if (!fs::exists(path, error)) return {};
  try {
    SafetensorsReader reader(path);
    const auto& metadata = reader.metadata();
    const auto key_hash = metadata.find(kKeyHash);
    const auto content_hash = metadata.find(kContentHash);
    if (reader.size() != 1 || !reader.contains(kValue) || key_hash == metadata.end() ||
        content_hash == metadata.end()) {
      throw FormatError(path + ": not a cache entry (expected one tensor '" + std::string(kValue) +
                        "' and the metadata " + kKeyHash + ", " + kContentHash + ")");
    }
    if (key_hash->second != sha256_hex(key)) throw FormatError(path + ": the entry belongs to another key");
    torch::Tensor value = reader.tensor(kValue).clone();  // plain memory, not a view of the mapping
    if (tensor_bytes_sha256(value) != content_hash->second) {
      throw FormatError(path + ": the stored tensor does not match its checksum");
    }
    return value;
  } catch (const std::exception& e) {
    SDTRAIN_LOG_ALL_RANKS(WARNING) << "cache: ignoring an unusable entry, it will be recomputed: " << e.what();
    return {};
  }
}

void TensorCache::put(const std::string& key, const torch::Tensor& value) {
  if (dir_.empty()) {
    // Room is checked before copying (a full cache copies nothing) and again when inserting,
    // since other workers may have filled it meanwhile; the copy itself runs outside the lock.
    const int64_t bytes = value.numel() * static_cast<int64_t>(value.element_size());
    if (!memory_has_room(key, bytes)) return;
    const torch::Tensor stored = value.detach().to(torch::kCPU).contiguous().clone();
    std::unique_lock<std::shared_mutex> lock(mutex_);
    if (!memory_has_room_locked(key, bytes)) return;
    const auto found = memory_.find(key);
    memory_bytes_ += bytes - (found == memory_.end() ? int64_t{0} : static_cast<int64_t>(found->second.nbytes()));
    memory_[key] = stored;
    return;
  }
  const torch::Tensor stored = value.detach().to(torch::kCPU).contiguous();
  const std::string path = path_for(key);
  try {
    std::error_code error;
    fs::create_directories(fs::path(path).parent_path(), error);
    save_safetensors(path, {{kValue, stored}},
                     {{kKeyHash, sha256_hex(key)}, {kContentHash, tensor_bytes_sha256(stored)}});
  } catch (const std::exception& e) {
    SDTRAIN_LOG_ALL_RANKS(WARNING) << "cache: could not store an entry (training goes on without it): " << e.what();
  }
}

bool TensorCache::memory_has_room(const std::string& key, int64_t bytes) {
  std::unique_lock<std::shared_mutex> lock(mutex_);
  return memory_has_room_locked(key, bytes);
}

bool TensorCache::memory_has_room_locked(const std::string& key, int64_t bytes) {
  if (max_memory_bytes_ <= 0) return true;
  const auto found = memory_.find(key);
  const auto replaced = found == memory_.end() ? int64_t{0} : static_cast<int64_t>(found->second.nbytes());
  if (memory_bytes_ - replaced + bytes <= max_memory_bytes_) return true;
  if (!warned_full_) {
    warned_full_ = true;
    SDTRAIN_LOG_ALL_RANKS(WARNING) << "cache: the in-memory cache is full (" << memory_.size() << " entries, "
                                   << size_text(memory_bytes_) << " of the " << limit_option_ << " limit of "
                                   << size_text(max_memory_bytes_)
                                   << "); entries past it are recomputed every time. Raise the limit or set "
                                      "cache.dir to keep them on disk";
  }
  return false;
}

}  // namespace sdtrain

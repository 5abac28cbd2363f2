#include "framework/data/tensor_cache.h"

#include <filesystem>
#include <system_error>

#include "framework/io/safetensors.h"
#include "framework/log/logger.h"
#include "framework/util/errors.h"
#include "framework/util/file_util.h"

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

}  // namespace

TensorCache::TensorCache(std::string dir, const std::string& option) : dir_(std::move(dir)) {
  if (dir_.empty()) return;
  std::error_code error;
  fs::create_directories(dir_, error);
  if (error || !fs::is_directory(dir_)) {
    throw ConfigError(option + ": cannot create the cache directory " + dir_ + ": " +
                      (error ? error.message() : "not a directory"));
  }
}

std::string TensorCache::path_for(const std::string& key) const {
  if (dir_.empty()) return "";
  const std::string hash = sha256_hex(key);
  return (fs::path(dir_) / hash.substr(0, 2) / (hash + ".safetensors")).string();
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
  const torch::Tensor stored = value.detach().to(torch::kCPU).contiguous().clone();
  if (dir_.empty()) {
    std::unique_lock<std::shared_mutex> lock(mutex_);
    memory_[key] = stored;
    return;
  }
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

}  // namespace sdtrain

#pragma once
/// A store of tensors by string key, in memory or on disk: the storage behind models' caches of
/// frozen encoders' outputs (stable_diffusion: latent moments, text embeddings).
///
/// On disk every entry is one safetensors file, <dir>/<h[0:2]>/<h>.safetensors with h the
/// SHA-256 of the key, holding the tensor "value" and, as metadata, the key's SHA-256 and the
/// SHA-256 of the tensor's bytes. Files are written atomically (a temporary beside the file,
/// fsync, rename: framework/io/atomic_file.h), so a reader sees a complete old or new file and
/// concurrent writers of one entry (several ranks, several runs) each leave a complete file. A file
/// that cannot be read, whose key hash or content hash does not match (truncated, bit rot, a file
/// copied under another name) is reported with a warning and treated as absent, so the caller
/// recomputes the value and put() replaces the file: a bad file is never trusted.
///
/// In memory the store can be bounded: once the held tensors reach max_memory_bytes, new keys are
/// not kept (the caller recomputes them each time) and one warning says so. Keeping the first
/// entries rather than evicting suits the epoch-shuffled access of training: an evicting store
/// would drop nearly every entry before its next use.
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>

#include <torch/torch.h>

namespace sdtrain {

class TensorCache {
 public:
  /// dir == "": in memory (for the process's lifetime), holding at most max_memory_bytes of
  /// tensors (0: no limit); `limit_option` names the field that sets the limit, for the warning.
  /// Otherwise the directory is created when missing; throws ConfigError naming `dir_option`
  /// (the config field that set it) when it cannot be.
  TensorCache(std::string dir, const std::string& dir_option, int64_t max_memory_bytes = 0,
              std::string limit_option = "");

  /// The tensor stored under `key` (a CPU tensor in plain memory), or an undefined tensor when
  /// there is none or the file is unusable (warning logged on the calling rank). Thread-safe.
  torch::Tensor get(const std::string& key) const;

  /// Stores `value` (copied to the CPU, contiguous) under `key`, replacing any previous entry.
  /// On disk, an I/O failure is logged as a warning and the entry is simply not stored (a cache
  /// must not stop training); in memory, a new key past the memory limit is not stored either
  /// (a warning the first time). Thread-safe.
  void put(const std::string& key, const torch::Tensor& value);

  bool on_disk() const { return !dir_.empty(); }
  const std::string& dir() const { return dir_; }
  /// Entries held in memory (0 on disk).
  std::size_t memory_entries() const;
  /// Bytes of the tensors held in memory (0 on disk).
  int64_t memory_bytes() const;
  /// The file of `key` on disk ("" in memory). For tests and messages.
  std::string path_for(const std::string& key) const;

 private:
  /// Whether `bytes` more under `key` (replacing its entry) stay within the memory limit; warns
  /// once when not. The _locked form expects mutex_ held exclusively.
  bool memory_has_room(const std::string& key, int64_t bytes);
  bool memory_has_room_locked(const std::string& key, int64_t bytes);

  std::string dir_;
  int64_t max_memory_bytes_ = 0;
  std::string limit_option_;
  mutable std::shared_mutex mutex_;
  std::unordered_map<std::string, torch::Tensor> memory_;
  int64_t memory_bytes_ = 0;
  bool warned_full_ = false;
};

}  // namespace sdtrain

#pragma once
/// A complete checkpoint folder as a reader sees it: its manifest, the files it lists (verified
/// on first use) and the parts' JSON state. Shared by the resume (CheckpointManager::load) and by
/// tools that read a finished checkpoint (checkpoint_snapshot.h).
///
/// Layout of a checkpoint (format "sdtrain-checkpoint-3"), see checkpoint_manager.h:
///   manifest.json        format, step, world size, the registered part names, the rank files
///                        and every file with its size and SHA-256 (written last, by rank 0)
///   trainer_state.json   {"step": s, "parts": {name: shared state}} (rank 0)
///   rank-<r:05>.json     {"rank": r, "world_size": W, "parts": {name: rank r's state}} (rank r)
///   <files>              whatever the parts wrote (model.safetensors, optimizer shards, ...)
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

namespace sdtrain {

inline constexpr const char* kCheckpointManifest = "manifest.json";
inline constexpr const char* kCheckpointSharedState = "trainer_state.json";
inline constexpr const char* kCheckpointFormat = "sdtrain-checkpoint-3";

/// Rank r's state file name: "rank-<r:05>.json".
std::string checkpoint_rank_file_name(int rank);

class CheckpointFolder {
 public:
  /// Reads and checks `folder`'s manifest. Throws FormatError naming the manifest when it is
  /// missing, malformed or of another format.
  explicit CheckpointFolder(std::string folder);

  const std::string& path() const { return folder_; }
  int64_t step() const { return step_; }
  /// How many ranks wrote the checkpoint.
  int world_size() const { return world_size_; }
  /// Whether the manifest lists `name`.
  bool lists(const std::string& name) const { return files_.count(name) != 0; }

  /// The path of file `name` after checking it against the manifest (listed, present, size,
  /// SHA-256), once per file and object. Throws FormatError naming the file (or the manifest,
  /// for a file it does not list).
  std::string verified(const std::string& name) const;

  /// The parts' shared state (trainer_state.json's "parts"), read and verified on first use.
  const nlohmann::json& shared_parts() const;
  /// Rank `rank`'s parts state (its rank file's "parts"); checks that the file says it was written
  /// by that rank of world_size().
  const nlohmann::json& rank_parts(int rank) const;

 private:
  struct FileEntry {
    uint64_t size = 0;
    std::string sha256;
  };
  const nlohmann::json& cached_json(const std::string& name) const;

  std::string folder_;
  std::string manifest_path_;
  int64_t step_ = 0;
  int world_size_ = 0;
  std::map<std::string, FileEntry> files_;
  mutable std::set<std::string> verified_;
  mutable std::map<std::string, nlohmann::json> json_;
};

/// Reads JSON file `path`; FormatError naming it when unreadable or malformed.
nlohmann::json read_json_file(const std::string& path);

}  // namespace sdtrain

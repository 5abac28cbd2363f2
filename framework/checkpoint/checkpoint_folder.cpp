#include "framework/checkpoint/checkpoint_folder.h"

#include <cstdio>
#include <filesystem>

#include "framework/util/file_util.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace fs = std::filesystem;
using nlohmann::json;

std::string checkpoint_rank_file_name(int rank) {
  char name[32];
  std::snprintf(name, sizeof(name), "rank-%05d.json", rank);
  return name;
}

json read_json_file(const std::string& path) {
  const std::string text = read_file<FormatError>(path);
  try {
    return json::parse(text);
  } catch (const json::exception& error) {
    throw FormatError(path + ": malformed JSON: " + error.what());
  }
}

CheckpointFolder::CheckpointFolder(std::string folder)
    : folder_(std::move(folder)), manifest_path_((fs::path(folder_) / kCheckpointManifest).string()) {
  const json manifest = read_json_file(manifest_path_);
  try {
    const std::string format = manifest.at("format").get<std::string>();
    if (format != kCheckpointFormat) {
      throw FormatError(manifest_path_ + ": checkpoint format '" + format + "', this sdtrain reads '" +
                        kCheckpointFormat + "' (checkpoints of sdtrain 0.1 before it do not resume)");
    }
    step_ = manifest.at("step").get<int64_t>();
    world_size_ = manifest.at("world_size").get<int>();
    for (const auto& file : manifest.at("files")) {
      files_[file.at("name").get<std::string>()] = {file.at("size").get<uint64_t>(),
                                                    file.at("sha256").get<std::string>()};
    }
  } catch (const json::exception& error) {
    throw FormatError(manifest_path_ + ": malformed manifest: " + error.what());
  }
}

std::string CheckpointFolder::verified(const std::string& name) const {
  const fs::path path = fs::path(folder_) / name;
  if (verified_.count(name) != 0) return path.string();
  const auto found = files_.find(name);
  if (found == files_.end()) throw FormatError(manifest_path_ + ": does not list " + name + ", which this checkpoint needs");
  if (!fs::exists(path)) throw FormatError(path.string() + ": listed in the manifest but missing");
  const auto size = fs::file_size(path);
  if (size != found->second.size) {
    throw FormatError(path.string() + ": size " + std::to_string(size) + " differs from the manifest's " +
                      std::to_string(found->second.size) + " (truncated or modified)");
  }
  const std::string digest = sha256_file(path.string());
  if (digest != found->second.sha256) {
    throw FormatError(path.string() + ": SHA-256 " + digest + " differs from the manifest's " + found->second.sha256 +
                      " (corrupted or modified)");
  }
  verified_.insert(name);
  return path.string();
}

const json& CheckpointFolder::cached_json(const std::string& name) const {
  auto found = json_.find(name);
  if (found == json_.end()) found = json_.emplace(name, read_json_file(verified(name))).first;
  return found->second;
}

const json& CheckpointFolder::shared_parts() const {
  const json& state = cached_json(kCheckpointSharedState);
  if (!state.contains("parts") || !state.at("parts").is_object()) {
    throw FormatError((fs::path(folder_) / kCheckpointSharedState).string() + ": no \"parts\" object");
  }
  return state.at("parts");
}

const json& CheckpointFolder::rank_parts(int rank) const {
  const std::string name = checkpoint_rank_file_name(rank);
  const json& file = cached_json(name);
  const std::string path = (fs::path(folder_) / name).string();
  try {
    if (file.at("rank").get<int>() != rank || file.at("world_size").get<int>() != world_size_) {
      throw FormatError(path + ": written as rank " + file.at("rank").dump() + " of " + file.at("world_size").dump() +
                        ", expected rank " + std::to_string(rank) + " of " + std::to_string(world_size_));
    }
    if (!file.at("parts").is_object()) throw FormatError(path + ": \"parts\" is not an object");
    return file.at("parts");
  } catch (const json::exception& error) {
    throw FormatError(path + ": " + error.what());
  }
}

}  // namespace sdtrain

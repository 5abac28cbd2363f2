#include "framework/checkpoint/checkpoint_manager.h"

#include <charconv>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <set>
#include <stdexcept>

#include "framework/checkpoint/checkpoint_folder.h"
#include "framework/io/atomic_file.h"
#include "framework/io/safetensors_writer.h"
#include "framework/log/logger.h"
#include "framework/util/fault_points.h"
#include "framework/util/file_util.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

/// The sidecar in the temporary folder through which rank r hands its files' sizes and digests
/// to rank 0 (never part of a finished checkpoint).
std::string sidecar_name(int rank) {
  char name[40];
  std::snprintf(name, sizeof(name), ".rank-%05d.files.json", rank);
  return name;
}

std::string step_folder_name(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof(name), "step-%08lld", static_cast<long long>(step));
  return name;
}

void write_json(const std::string& path, const json& value) {
  write_file_atomic(path, value.dump(2) + "\n");
}

/// A manifest entry for a file this rank wrote into `dir`.
json file_entry(const fs::path& dir, const std::string& name) {
  const fs::path path = dir / name;
  return {{"name", name}, {"size", fs::file_size(path)}, {"sha256", sha256_file(path.string())}};
}

/// One part's view of the checkpoint being written.
class PartWriter final : public CheckpointWriter {
 public:
  PartWriter(const fs::path& dir, const RankInfo& rank_info, std::string part, json& shared, json& rank_state,
             std::vector<std::string>& written)
      : dir_(dir), rank_info_(rank_info), part_(std::move(part)), shared_(shared), rank_state_(rank_state),
        written_(written) {}

  int rank() const override { return rank_info_.rank; }
  int world_size() const override { return rank_info_.world_size; }
  void put_shared(json value) override { shared_[part_] = std::move(value); }
  void put_rank(json value) override { rank_state_[part_] = std::move(value); }
  void write_tensors(const std::string& file_name, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                     const std::map<std::string, std::string>& metadata) override {
    std::vector<std::pair<std::string, torch::Tensor>> host;
    host.reserve(tensors.size());
    for (const auto& [name, tensor] : tensors) host.emplace_back(name, tensor.device().is_cpu() ? tensor : tensor.cpu());
    save_safetensors(add_file(file_name), host, metadata);
  }
  std::string add_file(const std::string& file_name) override {
    if (std::find(written_.begin(), written_.end(), file_name) != written_.end()) {
      throw std::logic_error("checkpoint part '" + part_ + "': file " + file_name + " is written twice");
    }
    written_.push_back(file_name);
    return (dir_ / file_name).string();
  }

 private:
  const fs::path& dir_;
  const RankInfo& rank_info_;
  std::string part_;
  json& shared_;
  json& rank_state_;
  std::vector<std::string>& written_;
};

/// One part's view of the checkpoint being read.
class PartReader final : public CheckpointReader {
 public:
  PartReader(const CheckpointFolder& folder, const RankInfo& rank_info, std::string part)
      : folder_(folder), rank_info_(rank_info), part_(std::move(part)) {}

  int rank() const override { return rank_info_.rank; }
  int world_size() const override { return rank_info_.world_size; }
  int written_world_size() const override { return folder_.world_size(); }
  bool has_shared() const override { return folder_.shared_parts().contains(part_); }
  const json& shared() const override {
    const json& parts = folder_.shared_parts();
    if (!parts.contains(part_)) throw FormatError(where(kCheckpointSharedState) + "missing");
    return parts.at(part_);
  }
  const json& rank_state(int rank) const override {
    if (rank < 0 || rank >= folder_.world_size()) {
      throw std::logic_error("checkpoint part '" + part_ + "': rank " + std::to_string(rank) + " out of range");
    }
    const json& parts = folder_.rank_parts(rank);
    if (!parts.contains(part_)) throw FormatError(where(checkpoint_rank_file_name(rank)) + "missing");
    return parts.at(part_);
  }
  std::string file(const std::string& file_name) const override { return folder_.verified(file_name); }
  bool has_file(const std::string& file_name) const override { return folder_.lists(file_name); }
  const std::string& folder() const override { return folder_.path(); }
  std::string where(const std::string& file_name) const override {
    return (fs::path(folder_.path()) / file_name).string() + ": part '" + part_ + "': ";
  }

 private:
  const CheckpointFolder& folder_;
  const RankInfo& rank_info_;
  std::string part_;
};

}  // namespace

CheckpointManager::CheckpointManager(std::string output_dir, int keep_last, const RankInfo& rank_info,
                                     Communicator& communicator, double fence_timeout_s)
    : checkpoints_dir_((fs::path(output_dir) / "checkpoints").string()),
      keep_last_(keep_last),
      rank_info_(rank_info),
      communicator_(communicator),
      fence_timeout_s_(fence_timeout_s) {}

void CheckpointManager::add_part(const std::string& name, Stateful& part) {
  static const std::regex valid(R"([A-Za-z0-9_:.\-]+)");
  if (!std::regex_match(name, valid)) throw std::logic_error("checkpoint part name '" + name + "' is not valid");
  for (const auto& [existing, unused] : parts_) {
    if (existing == name) throw std::logic_error("checkpoint part '" + name + "' is registered twice");
  }
  parts_.emplace_back(name, &part);
}

std::vector<std::string> CheckpointManager::list() const {
  std::vector<std::pair<int64_t, std::string>> found;
  if (!fs::is_directory(checkpoints_dir_)) return {};
  static const std::regex pattern(R"(step-(\d{8,}))");
  for (const auto& entry : fs::directory_iterator(checkpoints_dir_)) {
    std::smatch match;
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || !std::regex_match(name, match, pattern)) continue;
    if (!fs::exists(entry.path() / kCheckpointManifest)) continue;  // incomplete: never renamed into place
    // A step beyond int64 is no checkpoint of ours (stoll would throw std::out_of_range).
    int64_t step = 0;
    const std::string digits = match[1];
    const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), step);
    if (error != std::errc() || end != digits.data() + digits.size()) continue;
    found.emplace_back(step, entry.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& item : found) out.push_back(item.second);
  return out;
}

std::string CheckpointManager::resolve(const std::string& spec) const {
  if (spec == "auto") {
    const auto all = list();
    return all.empty() ? std::string() : all.back();
  }
  if (!fs::exists(fs::path(spec) / kCheckpointManifest)) {
    throw FormatError(spec + ": not a complete checkpoint (no " + kCheckpointManifest + ")");
  }
  return spec;
}

std::vector<int> CheckpointManager::ranks_that_failed(bool failed) {
  torch::Tensor flags = torch::zeros({rank_info_.world_size}, torch::kInt32);
  if (failed) flags[rank_info_.rank] = 1;
  communicator_.allreduce_sum(flags);
  std::vector<int> ranks;
  const auto* values = flags.data_ptr<int32_t>();
  for (int r = 0; r < rank_info_.world_size; ++r) {
    if (values[r] != 0) ranks.push_back(r);
  }
  return ranks;
}

std::string CheckpointManager::save(int64_t step) {
  const fs::path final_dir = fs::path(checkpoints_dir_) / step_folder_name(step);
  const fs::path temp_dir = fs::path(checkpoints_dir_) / ("." + step_folder_name(step) + ".partial");
  const int rank = rank_info_.rank;
  const int world_size = rank_info_.world_size;
  const std::string what = "checkpoint step " + std::to_string(step);

  // A rank that fails (a full disk, an I/O error) still reaches every fence, so that all ranks
  // learn of it at once instead of waiting into the fence timeout; then rank 0 removes the
  // temporary folder, and every rank throws. Earlier checkpoints are untouched.
  std::string failure;  // this rank's error, empty while all goes well
  const auto abandon_if_failed = [&](const std::string& stage) {
    const std::vector<int> failed = ranks_that_failed(!failure.empty());
    if (failed.empty()) return;
    if (rank == 0) {
      std::error_code ignored;
      fs::remove_all(temp_dir, ignored);
    }
    std::string message = what + " was not written (" + stage + " failed on rank";
    message += failed.size() > 1 ? "s" : "";
    for (std::size_t i = 0; i < failed.size(); ++i) message += (i ? ", " : " ") + std::to_string(failed[i]);
    message += failure.empty() ? "; its log names the cause" : ": " + failure;
    message += "); the checkpoints written before it are intact";
    throw std::runtime_error(message);
  };

  // 0. Rank 0 makes an empty temporary folder; nobody writes into it before.
  if (rank == 0) {
    try {
      fs::create_directories(checkpoints_dir_);
      fs::remove_all(temp_dir);  // left by a crash during an earlier attempt
      fs::create_directories(temp_dir);
      fsync_path(checkpoints_dir_);
    } catch (const std::exception& error) {
      failure = error.what();
    }
  }
  communicator_.barrier(fence_timeout_s_, "preparing " + what);
  abandon_if_failed("preparing its folder");

  // 1. Every rank saves every part (each file atomically and fsync'ed), then its state files.
  try {
    const ScopedFullDisk full_disk(fault_point(FaultPoint::kCheckpointWrite, step));
    std::vector<std::string> written;
    json shared = json::object();
    json mine = json::object();
    for (const auto& [name, part] : parts_) {
      PartWriter writer(temp_dir, rank_info_, name, shared, mine, written);
      part->save_state(writer);
    }
    if (rank == 0) {
      fault_point(FaultPoint::kCheckpointAfterPartsWrite, step);
      write_json((temp_dir / kCheckpointSharedState).string(), {{"step", step}, {"parts", shared}});
      written.push_back(kCheckpointSharedState);
    }
    for (const auto& name : written) {
      SDTRAIN_LOG(DEBUG) << "rank " << rank << " wrote " << name << " of " << what;
    }
    const std::string rank_file = checkpoint_rank_file_name(rank);
    write_json((temp_dir / rank_file).string(), {{"rank", rank}, {"world_size", world_size}, {"parts", mine}});
    written.push_back(rank_file);
    json entries = json::array();
    for (const auto& name : written) entries.push_back(file_entry(temp_dir, name));
    write_json((temp_dir / sidecar_name(rank)).string(), entries);
  } catch (const std::exception& error) {
    failure = error.what();
  }

  // 2. All ranks finished writing (fenced with the checkpoint timeout, not the collective one).
  communicator_.barrier(fence_timeout_s_, "writing " + what);
  abandon_if_failed("writing the files");

  // 3. Rank 0 alone completes the checkpoint and only then deletes anything.
  if (rank == 0) {
    try {
      complete(step, temp_dir, final_dir);
    } catch (const std::exception& error) {
      failure = error.what();
    }
    if (failure.empty()) {
      try {
        remove_old();
      } catch (const std::exception& error) {  // the new checkpoint is in place all the same
        SDTRAIN_LOG(WARNING) << "could not delete old checkpoints after " << what << ": " << error.what();
      }
    }
  }
  // 4. Nobody goes on (or resolves "auto") before the new checkpoint is in place.
  communicator_.barrier(fence_timeout_s_, "committing " + what);
  abandon_if_failed("completing the checkpoint");
  return final_dir.string();
}

void CheckpointManager::complete(int64_t step, const fs::path& temp_dir, const fs::path& final_dir) const {
  // Every rank's files, as that rank hashed them; the sidecars are not part of the checkpoint.
  json files = json::array();
  json rank_files = json::array();
  for (int r = 0; r < rank_info_.world_size; ++r) {
    const fs::path sidecar = temp_dir / sidecar_name(r);
    for (const auto& entry : read_json_file(sidecar.string())) files.push_back(entry);
    fs::remove(sidecar);
    rank_files.push_back(checkpoint_rank_file_name(r));
  }
  json part_names = json::array();
  for (const auto& [name, unused] : parts_) part_names.push_back(name);
  // The manifest goes last: a folder with a manifest is complete by construction.
  write_json((temp_dir / kCheckpointManifest).string(), {{"format", kCheckpointFormat},
                                                         {"step", step},
                                                         {"world_size", rank_info_.world_size},
                                                         {"parts", part_names},
                                                         {"rank_files", rank_files},
                                                         {"files", files}});
  fsync_path(temp_dir.string());

  // Swap into place. A checkpoint of the same step (a resumed run saving again) is replaced only
  // once the new one is complete, and put back if the swap fails half-way.
  const fs::path replaced = fs::path(checkpoints_dir_) / ("." + final_dir.filename().string() + ".replaced");
  const bool replacing = fs::exists(final_dir);
  if (replacing) fs::rename(final_dir, replaced);
  try {
    fs::rename(temp_dir, final_dir);
  } catch (...) {
    if (replacing) fs::rename(replaced, final_dir);
    throw;
  }
  fsync_path(checkpoints_dir_);
}

void CheckpointManager::remove_old() const {
  if (keep_last_ > 0) {
    auto all = list();
    for (std::size_t i = 0; i + static_cast<std::size_t>(keep_last_) < all.size(); ++i) fs::remove_all(all[i]);
  }
  // Leftovers of writes that a crash interrupted (never complete, so never resumed from).
  static const std::regex leftover(R"(\.step-\d{8,}\.(partial|replaced))");
  std::vector<fs::path> stale;
  for (const auto& entry : fs::directory_iterator(checkpoints_dir_)) {
    if (entry.is_directory() && std::regex_match(entry.path().filename().string(), leftover)) {
      stale.push_back(entry.path());
    }
  }
  for (const auto& path : stale) fs::remove_all(path);
}

void CheckpointManager::load(const std::string& folder) {
  const CheckpointFolder checkpoint(folder);
  for (const auto& [name, part] : parts_) part->load_state(PartReader(checkpoint, rank_info_, name));
}

}  // namespace sdtrain

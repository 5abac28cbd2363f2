#include "framework/checkpoint/checkpoint_manager.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <regex>
#include <set>

#include <nlohmann/json.hpp>

#include "framework/checkpoint/optimizer_shards.h"
#include "framework/config/config_loader.h"
#include "framework/io/atomic_file.h"
#include "framework/io/safetensors_reader.h"
#include "framework/io/safetensors_writer.h"
#include "framework/log/logger.h"
#include "framework/util/errors.h"
#include "framework/util/fault_points.h"
#include "framework/util/file_util.h"

namespace sdtrain {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kManifest = "manifest.json";
constexpr const char* kModel = "model.safetensors";
constexpr const char* kEma = "ema.safetensors";
constexpr const char* kState = "trainer_state.json";
constexpr const char* kFormat = "sdtrain-checkpoint-2";

/// Rank r's own state (see the header).
std::string rank_file_name(int rank) {
  char name[32];
  std::snprintf(name, sizeof(name), "rank-%05d.json", rank);
  return name;
}

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

/// Named views of a flat buffer (copied to the CPU for writing).
std::vector<std::pair<std::string, torch::Tensor>> named_views(FlatParameters& parameters, const torch::Tensor& flat,
                                                               const std::string& suffix = "") {
  const torch::Tensor host = flat.device().is_cpu() ? flat : flat.to(torch::kCPU);
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (std::size_t i = 0; i < parameters.names().size(); ++i) {
    out.emplace_back(parameters.names()[i] + suffix, parameters.view(host, i));
  }
  return out;
}

/// Copies the tensors named like `parameters` (+ suffix) from `reader` into `flat`.
void load_named_views(const SafetensorsReader& reader, FlatParameters& parameters, torch::Tensor& flat,
                      const std::string& suffix = "") {
  torch::NoGradGuard no_grad;
  for (std::size_t i = 0; i < parameters.names().size(); ++i) {
    const std::string name = parameters.names()[i] + suffix;
    if (!reader.contains(name)) {
      throw FormatError(reader.path() + ": tensor '" + name + "' is missing (was the checkpoint written for another model?)");
    }
    torch::Tensor source = reader.tensor(name);
    torch::Tensor target = parameters.view(flat, i);
    if (source.sizes() != target.sizes()) {
      throw FormatError(reader.path() + ": tensor '" + name + "' has shape " + c10::str(source.sizes()) +
                        ", the model expects " + c10::str(target.sizes()));
    }
    target.copy_(source);
  }
}

void write_json(const std::string& path, const json& value) {
  const std::string text = value.dump(2) + "\n";
  AtomicFile file(path);
  file.write(text.data(), text.size());
  file.commit();
}

json read_json(const std::string& path) {
  try {
    return json::parse(read_file(path));
  } catch (const json::exception& error) {
    throw FormatError(path + ": malformed JSON: " + error.what());
  } catch (const std::runtime_error& error) {
    throw FormatError(error.what());
  }
}

/// A manifest entry for a file this rank wrote into `dir`.
json file_entry(const fs::path& dir, const std::string& name) {
  const fs::path path = dir / name;
  return {{"name", name}, {"size", fs::file_size(path)}, {"sha256", sha256_file(path.string())}};
}

/// Reads the rank files of a checkpoint written by `world_size` ranks into `state`: every rank
/// must stand at the same place of the same epoch (ranks advance in lockstep), so together they
/// consumed the first batch_in_epoch x world_size x batch_size samples of the epoch's permutation.
/// The bad samples are `reader`'s own at an unchanged world size, else every rank's.
void read_rank_files(const fs::path& dir, int world_size, const RankInfo& reader, TrainingState& state) {
  for (int rank = 0; rank < world_size; ++rank) {
    const fs::path path = dir / rank_file_name(rank);
    const json file = read_json(path.string());
    try {
      const json& data = file.at("data");
      const int64_t epoch = data.at("epoch").get<int64_t>();
      const int64_t batch = data.at("batch_in_epoch").get<int64_t>();
      const int batch_size = data.at("batch_size").get<int>();
      if (file.at("rank").get<int>() != rank || file.at("world_size").get<int>() != world_size) {
        throw FormatError(path.string() + ": written as rank " + file.at("rank").dump() + " of " +
                          file.at("world_size").dump() + ", expected rank " + std::to_string(rank) + " of " +
                          std::to_string(world_size));
      }
      if (rank == 0) state.batch_size = batch_size;
      if (epoch != state.epoch || batch != state.batch_in_epoch || batch_size != state.batch_size) {
        throw FormatError(path.string() + ": data position epoch " + std::to_string(epoch) + ", micro-batch " +
                          std::to_string(batch) + " of " + std::to_string(batch_size) +
                          " differs from trainer_state.json and rank 0's (epoch " + std::to_string(state.epoch) +
                          ", micro-batch " + std::to_string(state.batch_in_epoch) + " of " +
                          std::to_string(state.batch_size) + ")");
      }
      // Absent in checkpoints written before the count was saved.
      if (data.contains("bad_samples") && (world_size != reader.world_size || rank == reader.rank)) {
        for (const auto& key : data.at("bad_samples")) state.bad_samples.insert(key.get<std::string>());
      }
    } catch (const json::exception& error) {
      throw FormatError(path.string() + ": " + error.what());
    }
  }
  state.samples_in_epoch = state.batch_in_epoch * world_size * state.batch_size;
}

}  // namespace

int64_t resumed_batch_in_epoch(const TrainingState& state, int world_size, int batch_size) {
  const int64_t samples = state.samples_in_epoch >= 0 ? state.samples_in_epoch
                                                      : state.batch_in_epoch * state.world_size * batch_size;
  const int64_t global_batch = static_cast<int64_t>(world_size) * batch_size;
  if (samples % global_batch != 0) {
    throw ConfigError("the checkpoint stopped " + std::to_string(samples) + " samples into epoch " +
                      std::to_string(state.epoch) + ", inside a global micro-batch of " + std::to_string(world_size) +
                      " ranks x data.batch_size " + std::to_string(batch_size) + " = " + std::to_string(global_batch) +
                      "; resume with a world size and batch size whose product divides " + std::to_string(samples));
  }
  return samples / global_batch;
}

void verify_checkpoint_files(const std::string& folder, const std::set<std::string>& names) {
  const fs::path dir(folder);
  const json manifest = read_json((dir / kManifest).string());
  try {
    std::set<std::string> unchecked = names;
    for (const auto& file : manifest.at("files")) {
      const std::string name = file.at("name").get<std::string>();
      if (unchecked.erase(name) == 0) continue;
      const fs::path path = dir / name;
      if (!fs::exists(path)) throw FormatError(path.string() + ": listed in the manifest but missing");
      const auto size = fs::file_size(path);
      if (size != file.at("size").get<uint64_t>()) {
        throw FormatError(path.string() + ": size " + std::to_string(size) + " differs from the manifest's " +
                          std::to_string(file.at("size").get<uint64_t>()) + " (truncated or modified)");
      }
      const std::string digest = sha256_file(path.string());
      if (digest != file.at("sha256").get<std::string>()) {
        throw FormatError(path.string() + ": SHA-256 " + digest + " differs from the manifest's " +
                          file.at("sha256").get<std::string>() + " (corrupted or modified)");
      }
    }
    if (!unchecked.empty()) {
      throw FormatError((dir / kManifest).string() + ": does not list " + *unchecked.begin() +
                        ", which this checkpoint needs");
    }
  } catch (const json::exception& error) {
    throw FormatError((dir / kManifest).string() + ": malformed manifest: " + error.what());
  }
}

CheckpointManager::CheckpointManager(std::string output_dir, int keep_last, const RankInfo& rank_info,
                                     Communicator& communicator, double fence_timeout_s)
    : checkpoints_dir_((fs::path(output_dir) / "checkpoints").string()),
      keep_last_(keep_last),
      rank_info_(rank_info),
      communicator_(communicator),
      fence_timeout_s_(fence_timeout_s) {}

std::vector<std::string> CheckpointManager::list() const {
  std::vector<std::pair<int64_t, std::string>> found;
  if (!fs::is_directory(checkpoints_dir_)) return {};
  static const std::regex pattern(R"(step-(\d{8,}))");
  for (const auto& entry : fs::directory_iterator(checkpoints_dir_)) {
    std::smatch match;
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || !std::regex_match(name, match, pattern)) continue;
    if (!fs::exists(entry.path() / kManifest)) continue;  // incomplete: never renamed into place
    found.emplace_back(std::stoll(match[1]), entry.path().string());
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
  if (!fs::exists(fs::path(spec) / kManifest)) {
    throw FormatError(spec + ": not a complete checkpoint (no " + kManifest + ")");
  }
  return spec;
}

std::string CheckpointManager::save(const TrainingState& state, FlatParameters& parameters, FlatAdamW& optimizer,
                                    int64_t optimizer_begin, ExponentialMovingAverage* ema, const TrainConfig& config) {
  const fs::path final_dir = fs::path(checkpoints_dir_) / step_folder_name(state.step);
  const fs::path temp_dir = fs::path(checkpoints_dir_) / ("." + step_folder_name(state.step) + ".partial");
  const int rank = rank_info_.rank;
  const int world_size = rank_info_.world_size;

  // 0. Rank 0 makes an empty temporary folder; nobody writes into it before.
  if (rank == 0) {
    fs::create_directories(checkpoints_dir_);
    fs::remove_all(temp_dir);  // left by a crash during an earlier attempt
    fs::create_directories(temp_dir);
    fsync_path(checkpoints_dir_);
  }
  communicator_.barrier(fence_timeout_s_, "preparing checkpoint step " + std::to_string(state.step));

  // 1. Every rank writes its part (each file atomically and fsync'ed) and hashes it.
  std::vector<std::string> written;
  if (rank == 0) {
    save_safetensors((temp_dir / kModel).string(), named_views(parameters, parameters.values()));
    written.push_back(kModel);
    fault_point(FaultPoint::kCheckpointAfterModelWrite, state.step);
    if (ema != nullptr) {
      save_safetensors((temp_dir / kEma).string(), named_views(parameters, ema->shadow()));
      written.push_back(kEma);
    }
    json trainer_state = {{"step", state.step},
                          {"epoch", state.epoch},
                          {"batch_in_epoch", state.batch_in_epoch},
                          {"images_seen", state.images_seen},
                          {"world_size", state.world_size},
                          {"ema_updates", state.ema_updates},
                          {"loss_history", state.loss_history},
                          {"callback_states", state.callback_states},
                          {"loss_scale", state.loss_scale},
                          {"loss_scale_growth_tracker", state.loss_scale_growth_tracker},
                          {"config", config_to_text(config)},
                          {"config_dir", state.config_dir}};
    write_json((temp_dir / kState).string(), trainer_state);
    written.push_back(kState);
  }
  const std::string shard =
      write_optimizer_shard(temp_dir.string(), optimizer, optimizer_begin, parameters.numel(), rank, world_size);
  SDTRAIN_LOG(DEBUG) << "rank " << rank << " wrote " << fs::path(shard).filename().string() << " of checkpoint step "
                     << state.step;
  written.push_back(optimizer_shard_name(rank, world_size));
  write_json((temp_dir / rank_file_name(rank)).string(),
             {{"rank", rank},
              {"world_size", world_size},
              {"data",
               {{"epoch", state.epoch},
                {"batch_in_epoch", state.batch_in_epoch},
                {"batch_size", state.batch_size},
                {"bad_samples", state.bad_samples}}},
              {"data_note", "rank r of world_size takes micro-batch b's slice b*world_size+r of the epoch's seeded "
                            "permutation; batch_in_epoch micro-batches of epoch are consumed"},
              {"rng", "none: every random draw of training comes from per-sample seeds derived from (run.seed, "
                      "epoch, dataset index); there is no per-rank generator state to restore"}});
  written.push_back(rank_file_name(rank));
  json mine = json::array();
  for (const auto& name : written) mine.push_back(file_entry(temp_dir, name));
  write_json((temp_dir / sidecar_name(rank)).string(), mine);

  // 2. All ranks finished writing (fenced with the checkpoint timeout, not the collective one).
  communicator_.barrier(fence_timeout_s_, "writing checkpoint step " + std::to_string(state.step));

  // 3. Rank 0 alone completes the checkpoint and only then deletes anything.
  if (rank == 0) {
    // Every rank's files, as that rank hashed them; the sidecars are not part of the checkpoint.
    json files = json::array();
    json shards = json::array();
    json rank_files = json::array();
    for (int r = 0; r < world_size; ++r) {
      const fs::path sidecar = temp_dir / sidecar_name(r);
      for (const auto& entry : read_json(sidecar.string())) files.push_back(entry);
      fs::remove(sidecar);
      shards.push_back(optimizer_shard_name(r, world_size));
      rank_files.push_back(rank_file_name(r));
    }
    // The manifest goes last: a folder with a manifest is complete by construction.
    write_json((temp_dir / kManifest).string(),
               {{"format", kFormat},
                {"step", state.step},
                {"epoch", state.epoch},
                {"world_size", world_size},
                {"config", config_to_text(config)},
                {"optimizer", {{"numel", parameters.numel()}, {"world_size", world_size}, {"shards", shards}}},
                {"rank_files", rank_files},
                {"files", files}});
    fsync_path(temp_dir.string());

    // Swap into place. A checkpoint of the same step (a resumed run saving again) is replaced only
    // once the new one is complete.
    const fs::path replaced = fs::path(checkpoints_dir_) / ("." + step_folder_name(state.step) + ".replaced");
    if (fs::exists(final_dir)) fs::rename(final_dir, replaced);
    fs::rename(temp_dir, final_dir);
    fsync_path(checkpoints_dir_);
    remove_old();
  }
  // 4. Nobody goes on (or resolves "auto") before the new checkpoint is in place.
  communicator_.barrier(fence_timeout_s_, "committing checkpoint step " + std::to_string(state.step));
  return final_dir.string();
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

TrainingState CheckpointManager::load(const std::string& folder, FlatParameters& parameters, FlatAdamW& optimizer,
                                      int64_t optimizer_begin, ExponentialMovingAverage* ema) const {
  const fs::path dir(folder);
  const json manifest = read_json((dir / kManifest).string());
  // Only what this rank reads is verified (hashing every rank's optimizer shard on every rank
  // multiplied the reads by the world size), but every rank file must be listed (a manifest that
  // leaves a shard out would let a corrupted one through on the rank that reads it).
  int written_by = 0;
  bool sharded = false;
  std::set<std::string> needed = {kModel, kState};
  if (ema != nullptr) {
    if (!fs::exists(dir / kEma)) throw FormatError((dir / kEma).string() + ": missing, but ema.enabled is true");
    needed.insert(kEma);
  }
  try {
    sharded = manifest.contains("optimizer");
    if (sharded) {
      written_by = manifest.at("optimizer").at("world_size").get<int>();
      std::set<std::string> listed;
      for (const auto& file : manifest.at("files")) listed.insert(file.at("name").get<std::string>());
      for (int r = 0; r < written_by; ++r) {
        for (const std::string& name : {optimizer_shard_name(r, written_by), rank_file_name(r)}) {
          if (listed.count(name) == 0) {
            throw FormatError((dir / kManifest).string() + ": does not list " + name + " (rank " + std::to_string(r) +
                              " of the " + std::to_string(written_by) + " that wrote the checkpoint)");
          }
        }
        needed.insert(rank_file_name(r));
      }
      const int64_t held_end = optimizer_begin + optimizer.exp_avg().numel();
      for (int r : optimizer_shards_to_read(written_by, parameters.numel(), optimizer_begin, held_end)) {
        needed.insert(optimizer_shard_name(r, written_by));
      }
    } else {
      needed.insert(kLegacyOptimizerFile);
    }
  } catch (const json::exception& error) {
    throw FormatError((dir / kManifest).string() + ": malformed manifest: " + error.what());
  }
  verify_checkpoint_files(folder, needed);

  load_named_views(SafetensorsReader((dir / kModel).string()), parameters, parameters.values());
  if (ema != nullptr) load_named_views(SafetensorsReader((dir / kEma).string()), parameters, ema->shadow());
  if (sharded) {
    read_optimizer_shards(folder, written_by, parameters.numel(), optimizer, optimizer_begin);
  } else {
    read_legacy_optimizer((dir / kLegacyOptimizerFile).string(), parameters, optimizer, optimizer_begin);
  }

  const json trainer_state = read_json((dir / kState).string());
  TrainingState state;
  try {
    state.step = trainer_state.at("step").get<int64_t>();
    state.epoch = trainer_state.at("epoch").get<int64_t>();
    state.batch_in_epoch = trainer_state.at("batch_in_epoch").get<int64_t>();
    state.images_seen = trainer_state.at("images_seen").get<int64_t>();
    state.world_size = trainer_state.at("world_size").get<int>();
    state.ema_updates = trainer_state.at("ema_updates").get<int64_t>();
    // JSON has no inf/NaN: nlohmann writes a non-finite loss (an fp16 overflow step) as null.
    for (const auto& loss : trainer_state.at("loss_history")) {
      state.loss_history.push_back(loss.is_null() ? std::numeric_limits<double>::quiet_NaN() : loss.get<double>());
    }
    state.callback_states = trainer_state.at("callback_states").get<std::map<std::string, std::string>>();
    state.loss_scale = trainer_state.value("loss_scale", 0.0);
    state.loss_scale_growth_tracker = trainer_state.value("loss_scale_growth_tracker", int64_t{0});
  } catch (const json::exception& error) {
    throw FormatError((dir / kState).string() + ": " + error.what());
  }
  if (sharded) read_rank_files(dir, written_by, rank_info_, state);
  return state;
}

}  // namespace sdtrain

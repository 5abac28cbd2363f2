#include "framework/checkpoint/optimizer_shards.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <stdexcept>

#include "framework/io/safetensors_reader.h"
#include "framework/io/safetensors_writer.h"
#include "framework/train/sharded_adamw.h"
#include "framework/util/errors.h"

namespace sdtrain {
namespace fs = std::filesystem;

namespace {

constexpr const char* kShardFormat = "sdtrain-optimizer-shard-1";

/// An integer from a shard's metadata; FormatError naming the file and key otherwise.
int64_t metadata_int(const SafetensorsReader& reader, const std::string& key) {
  const auto found = reader.metadata().find(key);
  if (found == reader.metadata().end()) throw FormatError(reader.path() + ": metadata '" + key + "' missing");
  try {
    std::size_t used = 0;
    const int64_t value = std::stoll(found->second, &used);
    if (used == found->second.size()) return value;
  } catch (const std::exception&) {
  }
  throw FormatError(reader.path() + ": metadata '" + key + "' is '" + found->second + "', expected an integer");
}

/// The held range's end (exclusive).
int64_t held_end(FlatAdamW& held, int64_t held_begin) { return held_begin + held.exp_avg().numel(); }

}  // namespace

std::string optimizer_shard_name(int rank, int world_size) {
  char name[64];
  std::snprintf(name, sizeof(name), "optimizer-rank-%05d-of-%05d.safetensors", rank, world_size);
  return name;
}

std::string write_optimizer_shard(const std::string& folder, FlatAdamW& held, int64_t held_begin, int64_t numel,
                                  int rank, int world_size) {
  const ShardRange mine = shard_range(numel, rank, world_size);
  if (mine.begin < held_begin || mine.end > held_end(held, held_begin)) {
    throw std::logic_error("write_optimizer_shard: rank " + std::to_string(rank) + " holds the optimizer state [" +
                           std::to_string(held_begin) + ", " + std::to_string(held_end(held, held_begin)) +
                           ") but its shard is [" + std::to_string(mine.begin) + ", " + std::to_string(mine.end) + ")");
  }
  const int64_t offset = mine.begin - held_begin;
  const std::string path = (fs::path(folder) / optimizer_shard_name(rank, world_size)).string();
  save_safetensors(path,
                   {{"exp_avg", held.exp_avg().narrow(0, offset, mine.size())},
                    {"exp_avg_sq", held.exp_avg_sq().narrow(0, offset, mine.size())}},
                   {{"format", kShardFormat},
                    {"rank", std::to_string(rank)},
                    {"world_size", std::to_string(world_size)},
                    {"begin", std::to_string(mine.begin)},
                    {"end", std::to_string(mine.end)},
                    {"numel", std::to_string(numel)},
                    {"adam_step", std::to_string(held.step_count())}});
  return path;
}

std::vector<int> optimizer_shards_to_read(int world_size, int64_t numel, int64_t held_begin, int64_t held_end) {
  std::vector<int> ranks;
  for (int rank = 0; rank < world_size; ++rank) {
    const ShardRange range = shard_range(numel, rank, world_size);
    if (rank == 0 || std::max(range.begin, held_begin) < std::min(range.end, held_end)) ranks.push_back(rank);
  }
  return ranks;
}

void read_optimizer_shards(const std::string& folder, int world_size, int64_t numel, FlatAdamW& held,
                           int64_t held_begin) {
  torch::NoGradGuard no_grad;
  const int64_t end = held_end(held, held_begin);
  int64_t adam_step = -1;
  for (int rank : optimizer_shards_to_read(world_size, numel, held_begin, end)) {
    const ShardRange range = shard_range(numel, rank, world_size);
    const int64_t low = std::max(range.begin, held_begin);
    const int64_t high = std::min(range.end, end);
    const fs::path path = fs::path(folder) / optimizer_shard_name(rank, world_size);
    if (!fs::exists(path)) throw FormatError(path.string() + ": missing (rank " + std::to_string(rank) + "'s optimizer state)");
    const SafetensorsReader reader(path.string());
    const auto format = reader.metadata().find("format");
    if (format == reader.metadata().end() || format->second != kShardFormat) {
      throw FormatError(reader.path() + ": not an sdtrain optimizer shard (metadata 'format' is not '" +
                        kShardFormat + "')");
    }
    if (metadata_int(reader, "numel") != numel) {
      throw FormatError(reader.path() + ": optimizer state of " + std::to_string(metadata_int(reader, "numel")) +
                        " elements, the model has " + std::to_string(numel) +
                        " trained parameters (was the checkpoint written for another model?)");
    }
    if (metadata_int(reader, "begin") != range.begin || metadata_int(reader, "end") != range.end) {
      throw FormatError(reader.path() + ": holds elements [" + std::to_string(metadata_int(reader, "begin")) + ", " +
                        std::to_string(metadata_int(reader, "end")) + "), expected [" + std::to_string(range.begin) +
                        ", " + std::to_string(range.end) + ") for rank " + std::to_string(rank) + " of " +
                        std::to_string(world_size));
    }
    const int64_t step = metadata_int(reader, "adam_step");
    if (adam_step >= 0 && step != adam_step) {
      throw FormatError(reader.path() + ": adam_step " + std::to_string(step) + " differs from rank 0's " +
                        std::to_string(adam_step));
    }
    adam_step = step;
    if (high <= low) continue;  // rank 0's shard, opened for the step count only
    for (const char* name : {"exp_avg", "exp_avg_sq"}) {
      const torch::Tensor source = reader.tensor(name);
      if (source.dim() != 1 || source.numel() != range.size()) {
        throw FormatError(reader.path() + ": tensor '" + name + "' has shape " + c10::str(source.sizes()) +
                          ", expected [" + std::to_string(range.size()) + "]");
      }
      torch::Tensor& target = std::string(name) == "exp_avg" ? held.exp_avg() : held.exp_avg_sq();
      target.narrow(0, low - held_begin, high - low).copy_(source.narrow(0, low - range.begin, high - low));
    }
  }
  held.set_step_count(adam_step);
}

void read_legacy_optimizer(const std::string& path, const FlatParameters& parameters, FlatAdamW& held,
                           int64_t held_begin) {
  torch::NoGradGuard no_grad;
  const SafetensorsReader reader(path);
  const int64_t end = held_end(held, held_begin);
  for (std::size_t i = 0; i < parameters.names().size(); ++i) {
    const int64_t begin = parameters.offsets()[i];
    const std::vector<int64_t>& shape = parameters.shapes()[i];
    int64_t count = 1;
    for (int64_t extent : shape) count *= extent;
    const int64_t low = std::max(begin, held_begin);
    const int64_t high = std::min(begin + count, end);
    for (const char* suffix : {".exp_avg", ".exp_avg_sq"}) {
      const std::string name = parameters.names()[i] + suffix;
      if (!reader.contains(name)) {
        throw FormatError(path + ": tensor '" + name + "' is missing (was the checkpoint written for another model?)");
      }
      if (reader.entry(name).shape != shape) {
        throw FormatError(path + ": tensor '" + name + "' has shape " + c10::str(reader.entry(name).shape) +
                          ", the model expects " + c10::str(shape));
      }
      if (high <= low) continue;
      torch::Tensor& target = std::string(suffix) == ".exp_avg" ? held.exp_avg() : held.exp_avg_sq();
      target.narrow(0, low - held_begin, high - low)
          .copy_(reader.tensor(name).reshape({-1}).narrow(0, low - begin, high - low));
    }
  }
  const auto adam_step = reader.metadata().find("adam_step");
  if (adam_step == reader.metadata().end()) throw FormatError(path + ": metadata 'adam_step' missing");
  held.set_step_count(metadata_int(reader, "adam_step"));
}

}  // namespace sdtrain

#include "framework/train/optimizer_shards.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <stdexcept>

#include "framework/io/safetensors_reader.h"
#include "framework/train/sharded_adamw.h"
#include "sdtrain/errors.h"

namespace sdtrain {

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

}  // namespace

std::string optimizer_shard_name(int rank, int world_size) {
  char name[64];
  std::snprintf(name, sizeof(name), "optimizer-rank-%05d-of-%05d.safetensors", rank, world_size);
  return name;
}

void OptimizerShardState::save_state(CheckpointWriter& out) {
  const int rank = out.rank();
  const int world_size = out.world_size();
  const ShardRange mine = shard_range(numel_, rank, world_size);
  const int64_t held_end = held_begin_ + held_.exp_avg().numel();
  if (mine.begin < held_begin_ || mine.end > held_end) {
    throw std::logic_error("optimizer checkpoint: rank " + std::to_string(rank) + " holds the optimizer state [" +
                           std::to_string(held_begin_) + ", " + std::to_string(held_end) + ") but its shard is [" +
                           std::to_string(mine.begin) + ", " + std::to_string(mine.end) + ")");
  }
  const int64_t offset = mine.begin - held_begin_;
  out.write_tensors(optimizer_shard_name(rank, world_size),
                    {{"exp_avg", held_.exp_avg().narrow(0, offset, mine.size())},
                     {"exp_avg_sq", held_.exp_avg_sq().narrow(0, offset, mine.size())}},
                    {{"format", kShardFormat},
                     {"rank", std::to_string(rank)},
                     {"world_size", std::to_string(world_size)},
                     {"begin", std::to_string(mine.begin)},
                     {"end", std::to_string(mine.end)},
                     {"numel", std::to_string(numel_)},
                     {"adam_step", std::to_string(held_.step_count())},
                     {"layout", layout_}});
}

std::vector<int> optimizer_shards_to_read(int world_size, int64_t numel, int64_t held_begin, int64_t held_end) {
  std::vector<int> ranks;
  for (int rank = 0; rank < world_size; ++rank) {
    const ShardRange range = shard_range(numel, rank, world_size);
    if (rank == 0 || std::max(range.begin, held_begin) < std::min(range.end, held_end)) ranks.push_back(rank);
  }
  return ranks;
}

void OptimizerShardState::load_state(const CheckpointReader& in) {
  torch::NoGradGuard no_grad;
  const int world_size = in.written_world_size();
  const int64_t end = held_begin_ + held_.exp_avg().numel();
  int64_t adam_step = -1;
  for (int rank : optimizer_shards_to_read(world_size, numel_, held_begin_, end)) {
    const ShardRange range = shard_range(numel_, rank, world_size);
    const int64_t low = std::max(range.begin, held_begin_);
    const int64_t high = std::min(range.end, end);
    const SafetensorsReader reader(in.file(optimizer_shard_name(rank, world_size)));
    const auto format = reader.metadata().find("format");
    if (format == reader.metadata().end() || format->second != kShardFormat) {
      throw FormatError(reader.path() + ": not an sdtrain optimizer shard (metadata 'format' is not '" +
                        kShardFormat + "')");
    }
    if (metadata_int(reader, "numel") != numel_) {
      throw FormatError(reader.path() + ": optimizer state of " + std::to_string(metadata_int(reader, "numel")) +
                        " elements, the model has " + std::to_string(numel_) +
                        " trained parameters (was the checkpoint written for another model?)");
    }
    if (metadata_int(reader, "begin") != range.begin || metadata_int(reader, "end") != range.end) {
      throw FormatError(reader.path() + ": holds elements [" + std::to_string(metadata_int(reader, "begin")) + ", " +
                        std::to_string(metadata_int(reader, "end")) + "), expected [" + std::to_string(range.begin) +
                        ", " + std::to_string(range.end) + ") for rank " + std::to_string(rank) + " of " +
                        std::to_string(world_size));
    }
    const auto layout = reader.metadata().find("layout");
    const std::string written_layout = layout == reader.metadata().end() ? "standard" : layout->second;
    if (written_layout != layout_) {
      throw FormatError(reader.path() + ": the optimizer state is ordered for " + written_layout +
                        " parameters, this run stores them " + layout_ +
                        " (resume with the unet's channels_last as the run that wrote the checkpoint)");
    }
    const int64_t step = metadata_int(reader, "adam_step");
    if (adam_step >= 0 && step != adam_step) {
      throw FormatError(reader.path() + ": adam_step " + std::to_string(step) + " differs from rank 0's " +
                        std::to_string(adam_step));
    }
    adam_step = step;
    if (high <= low) continue;  // rank 0's shard, opened for the step count only
    for (const char* name : {"exp_avg", "exp_avg_sq"}) {
      const std::vector<int64_t>& shape = reader.entry(name).shape;
      if (shape.size() != 1 || shape[0] != range.size()) {
        throw FormatError(reader.path() + ": tensor '" + name + "' has shape " + c10::str(c10::IntArrayRef(shape)) +
                          ", expected [" + std::to_string(range.size()) + "]");
      }
      torch::Tensor& target = std::string(name) == "exp_avg" ? held_.exp_avg() : held_.exp_avg_sq();
      // In slices, each its own view of the file: a moment is the size of the model, and viewed
      // whole, every page read would stay resident until the end of its copy, beside the state it
      // is read into (MappedFile::hold); a slice's pages go as the slice does.
      constexpr int64_t kSlice = int64_t{16} << 20;  // elements: 64 MB of fp32
      for (int64_t at = low; at < high; at += kSlice) {
        const int64_t count = std::min(kSlice, high - at);
        target.narrow(0, at - held_begin_, count).copy_(reader.elements(name, at - range.begin, count));
      }
    }
  }
  held_.set_step_count(adam_step);
}

}  // namespace sdtrain

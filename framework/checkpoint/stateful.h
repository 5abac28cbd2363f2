#pragma once
/// The one interface through which a part of a training run survives a resume.
///
/// Every part that holds state a resume needs (progress counters, the weights, the optimizer's
/// slice, the EMA, the loss scaler, the data position, each callback, ...) implements Stateful and
/// is registered with the CheckpointManager under a name. The manager iterates over the registered
/// parts and knows none of them: adding a part never means editing the checkpoint code (the idea of
/// torchtitan's and torch.distributed.checkpoint's `Stateful`, adapted to per-rank files).
///
/// A part may store, under its name:
///   - shared state: one JSON value that is the same on every rank (rank 0's copy is written,
///     into trainer_state.json);
///   - rank state: one JSON value per rank (written by each rank into its rank-<r:05>.json; a
///     resume may read every writing rank's, e.g. to reshard);
///   - files: any files a rank writes into the checkpoint folder (tensors as safetensors); each is
///     hashed into the manifest and verified before a reader may open it.
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/types.h>

namespace sdtrain {

/// What save_state() writes through. One per part and save; valid only during the call.
class CheckpointWriter {
 public:
  virtual ~CheckpointWriter() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  /// Sets the part's shared state (same on every rank; rank 0's is the one written).
  virtual void put_shared(nlohmann::json value) = 0;
  /// Sets the part's state of this rank.
  virtual void put_rank(nlohmann::json value) = 0;
  /// Writes `tensors` (CPU or device; copied to the host) as safetensors file `file_name` of the
  /// checkpoint, with `metadata` in its header. The file is written atomically and fsync'ed.
  virtual void write_tensors(const std::string& file_name,
                             const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                             const std::map<std::string, std::string>& metadata = {}) = 0;
  /// For a part that writes a file itself: the path of `file_name` in the checkpoint being
  /// written. The file must be complete (and fsync'ed) when save_state() returns.
  virtual std::string add_file(const std::string& file_name) = 0;
};

/// What load_state() reads through. One per part and load; valid only during the call.
/// Every accessor throws FormatError naming the checkpoint file and the part on missing or
/// malformed state.
class CheckpointReader {
 public:
  virtual ~CheckpointReader() = default;
  /// This run's rank and world size.
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  /// How many ranks wrote the checkpoint.
  virtual int written_world_size() const = 0;
  /// Whether the checkpoint holds shared state for this part (a part that a run without it did
  /// not write, e.g. the loss scaler of an fp32 run).
  virtual bool has_shared() const = 0;
  /// The part's shared state.
  virtual const nlohmann::json& shared() const = 0;
  /// The part's state of writing rank `rank` (0 <= rank < written_world_size()).
  virtual const nlohmann::json& rank_state(int rank) const = 0;
  /// The path of file `file_name`, verified against the manifest (listed, size, SHA-256) before
  /// it is returned. Only what a rank opens is hashed.
  virtual std::string file(const std::string& file_name) const = 0;
  /// Whether the manifest lists `file_name`.
  virtual bool has_file(const std::string& file_name) const = 0;
  /// The checkpoint folder (for messages).
  virtual const std::string& folder() const = 0;
  /// "<file>: part '<name>': " for messages about the part's state in `file`.
  virtual std::string where(const std::string& file_name) const = 0;
};

/// A part of the run that saves and restores its own state.
class Stateful {
 public:
  virtual ~Stateful() = default;
  /// Collective: called on every rank, for every part in registration order.
  virtual void save_state(CheckpointWriter& out) = 0;
  /// Called on every rank, in registration order, after the checkpoint was resolved. A part
  /// registered after an earlier one may rely on that one being loaded already.
  virtual void load_state(const CheckpointReader& in) = 0;
};

}  // namespace sdtrain

#include "framework/train/checkpoint_parts.h"

#include <limits>

#include "framework/checkpoint/checkpoint_folder.h"
#include "framework/data/data_loader.h"
#include "framework/io/safetensors_reader.h"
#include "framework/log/logger.h"
#include "sdtrain/callback.h"
#include "sdtrain/errors.h"

namespace sdtrain {
using nlohmann::json;

void FlatTensorState::save_state(CheckpointWriter& out) {
  if (out.rank() != 0) return;  // the same on every rank
  std::vector<std::pair<std::string, torch::Tensor>> named;
  const torch::Tensor host = flat_.device().is_cpu() ? flat_ : flat_.cpu();
  for (std::size_t i = 0; i < layout_.names().size(); ++i) named.emplace_back(layout_.names()[i], layout_.view(host, i));
  out.write_tensors(file_name_, named);
}

void FlatTensorState::load_state(const CheckpointReader& in) {
  const SafetensorsReader reader(in.file(file_name_));
  torch::NoGradGuard no_grad;
  for (std::size_t i = 0; i < layout_.names().size(); ++i) {
    const std::string& name = layout_.names()[i];
    if (!reader.contains(name)) {
      throw FormatError(reader.path() + ": tensor '" + name + "' is missing (was the checkpoint written for another model?)");
    }
    const torch::Tensor source = reader.tensor(name);
    torch::Tensor target = layout_.view(flat_, i);
    if (source.sizes() != target.sizes()) {
      throw FormatError(reader.path() + ": tensor '" + name + "' has shape " + c10::str(source.sizes()) +
                        ", the model expects " + c10::str(target.sizes()));
    }
    target.copy_(source);
  }
}

void EmaState::save_state(CheckpointWriter& out) {
  // While swapped in, the shadow buffer holds the trained weights (ema.h).
  TORCH_CHECK(!ema_.swapped_in(), "checkpoint: the EMA weights are swapped in");
  shadow_.save_state(out);
  out.put_shared({{"num_updates", ema_.num_updates()}});
}

void EmaState::load_state(const CheckpointReader& in) {
  if (!in.has_file(kCheckpointEmaFile)) {
    throw FormatError(in.folder() + ": holds no " + kCheckpointEmaFile + ", but ema.enabled is true");
  }
  shadow_.load_state(in);
  try {
    ema_.set_num_updates(in.shared().at("num_updates").get<int64_t>());
  } catch (const json::exception& error) {
    throw FormatError(in.where(kCheckpointSharedState) + error.what());
  }
}

void ProgressState::save_state(CheckpointWriter& out) {
  out.put_shared({{"step", progress_.step}, {"images_seen", progress_.images_seen}, {"loss_history", loss_history_}});
}

void ProgressState::load_state(const CheckpointReader& in) {
  const json& state = in.shared();
  try {
    progress_.step = state.at("step").get<int64_t>();
    progress_.images_seen = state.at("images_seen").get<int64_t>();
    loss_history_.clear();
    // JSON has no inf/NaN: nlohmann writes a non-finite loss (an fp16 overflow step) as null.
    for (const auto& loss : state.at("loss_history")) {
      loss_history_.push_back(loss.is_null() ? std::numeric_limits<double>::quiet_NaN() : loss.get<double>());
    }
  } catch (const json::exception& error) {
    throw FormatError(in.where(kCheckpointSharedState) + error.what());
  }
}

int64_t resumed_batch_in_epoch(const SavedDataPosition& saved, int world_size, int batch_size, bool bucketed) {
  const int64_t samples = saved.batch_in_epoch * saved.world_size * saved.batch_size;
  const int64_t global_batch = static_cast<int64_t>(world_size) * batch_size;
  const int64_t saved_global_batch = static_cast<int64_t>(saved.world_size) * saved.batch_size;
  if (bucketed && samples > 0 && global_batch != saved_global_batch) {
    throw ConfigError("data.buckets: the checkpoint stopped inside epoch " + std::to_string(saved.epoch) +
                      ", whose batches were dealt for a global batch of " + std::to_string(saved.world_size) +
                      " ranks x data.batch_size " + std::to_string(saved.batch_size) + " = " +
                      std::to_string(saved_global_batch) + "; resume with the same product of ranks and batch size (" +
                      std::to_string(world_size) + " x " + std::to_string(batch_size) + " = " +
                      std::to_string(global_batch) + " given), or from a checkpoint at an epoch's end");
  }
  if (samples % global_batch != 0) {
    throw ConfigError("the checkpoint stopped " + std::to_string(samples) + " samples into epoch " +
                      std::to_string(saved.epoch) + ", inside a global micro-batch of " + std::to_string(world_size) +
                      " ranks x data.batch_size " + std::to_string(batch_size) + " = " + std::to_string(global_batch) +
                      "; resume with a world size and batch size whose product divides " + std::to_string(samples));
  }
  return samples / global_batch;
}

void DataPositionState::save_state(CheckpointWriter& out) {
  json state = {{"epoch", progress_.epoch},
                {"batch_in_epoch", progress_.batch_in_epoch},
                {"batch_size", batch_size_},
                {"bucket_digest", bucket_digest_},
                {"order_digest", loader_.order_digest()},
                {"bad_samples", loader_.bad_sample_keys()},
                {"note", "rank r of world_size takes micro-batch b's slice b*world_size+r of the epoch's seeded "
                         "permutation; batch_in_epoch micro-batches of epoch are consumed"}};
  // Where this rank reads next in a sharded dataset, for people reading the checkpoint; the
  // position itself follows from (epoch, batch_in_epoch) and the order.
  if (const auto position = loader_.shard_position(progress_.epoch, progress_.batch_in_epoch)) {
    state["next_sample"] = {{"shard", position->first}, {"index", position->second}};
  }
  out.put_rank(state);
}

void DataPositionState::load_state(const CheckpointReader& in) {
  // Ranks advance in lockstep: every writing rank stands at the same place of the same epoch, so
  // together they consumed the first batch_in_epoch x world_size x batch_size samples of it.
  SavedDataPosition saved;
  saved.world_size = in.written_world_size();
  std::set<std::string> bad_samples;
  for (int rank = 0; rank < saved.world_size; ++rank) {
    const json& state = in.rank_state(rank);
    const std::string file = checkpoint_rank_file_name(rank);
    try {
      const int64_t epoch = state.at("epoch").get<int64_t>();
      const int64_t batch = state.at("batch_in_epoch").get<int64_t>();
      const int batch_size = state.at("batch_size").get<int>();
      if (rank == 0) {
        saved.epoch = epoch;
        saved.batch_in_epoch = batch;
        saved.batch_size = batch_size;
      } else if (epoch != saved.epoch || batch != saved.batch_in_epoch || batch_size != saved.batch_size) {
        throw FormatError(in.where(file) + "data position epoch " + std::to_string(epoch) + ", micro-batch " +
                          std::to_string(batch) + " of " + std::to_string(batch_size) + " differs from rank 0's (epoch " +
                          std::to_string(saved.epoch) + ", micro-batch " + std::to_string(saved.batch_in_epoch) +
                          " of " + std::to_string(saved.batch_size) + ")");
      }
      if (saved.world_size != in.world_size() || rank == in.rank()) {
        for (const auto& key : state.at("bad_samples")) bad_samples.insert(key.get<std::string>());
      }
    } catch (const json::exception& error) {
      throw FormatError(in.where(file) + error.what());
    }
  }
  progress_.epoch = saved.epoch;
  progress_.batch_in_epoch = resumed_batch_in_epoch(saved, in.world_size(), batch_size_, !bucket_digest_.empty());
  // Checkpoints from before buckets existed carry no digest: they were not bucketed.
  const json& own = in.rank_state(0);
  const std::string saved_digest = own.contains("bucket_digest") ? own.at("bucket_digest").get<std::string>() : "";
  if (progress_.batch_in_epoch > 0 && saved_digest != bucket_digest_) {
    SDTRAIN_LOG(WARNING) << "data.buckets: the bucket plan differs from the checkpoint's ("
                         << (saved_digest.empty() ? "none" : saved_digest.substr(0, 12)) << " then, "
                         << (bucket_digest_.empty() ? "none" : bucket_digest_.substr(0, 12))
                         << " now: images, their sizes or the bucket rules changed); the rest of epoch "
                         << progress_.epoch << " is dealt from the new plan and may repeat or skip samples";
  }
  const std::string saved_order = own.contains("order_digest") ? own.at("order_digest").get<std::string>() : "";
  if (progress_.batch_in_epoch > 0 && !saved_order.empty() && saved_order != loader_.order_digest()) {
    SDTRAIN_LOG(WARNING) << "data: the sample order differs from the checkpoint's (the dataset's size or shards, "
                            "data.shuffle or data.shuffle_buffer changed); the rest of epoch "
                         << progress_.epoch << " follows the new order and may repeat or skip samples";
  }
  loader_.restore_bad_samples(bad_samples);
}

void CallbackState::save_state(CheckpointWriter& out) { out.put_shared(callback_.on_save_checkpoint(trainer_)); }

void CallbackState::load_state(const CheckpointReader& in) {
  if (!in.has_shared()) return;
  if (!in.shared().is_string()) throw FormatError(in.where(kCheckpointSharedState) + "expected a string");
  callback_.on_load_checkpoint(trainer_, in.shared().get<std::string>());
}

void RunRecordState::save_state(CheckpointWriter& out) {
  out.put_shared({{"config", config_text_}, {"config_dir", config_dir_}});
}

void ModelIdentityState::save_state(CheckpointWriter& out) {
  nlohmann::json facts = nlohmann::json::object();
  for (const auto& [key, value] : identity_) facts[key] = value;
  out.put_shared(facts);
}

void ModelIdentityState::load_state(const CheckpointReader& in) {
  if (identity_.empty()) return;
  const nlohmann::json empty = nlohmann::json::object();
  const nlohmann::json& saved = in.has_shared() ? in.shared() : empty;
  for (const auto& [key, value] : identity_) {
    const std::string theirs =
        saved.contains(key) && saved[key].is_string() ? saved[key].get<std::string>() : std::string("(not recorded)");
    if (theirs == value) continue;
    std::string message = in.folder() + ": the checkpoint's model " + key + " is " + theirs + " but this run's is " +
                          value + "; it can resume only on the model it was trained on";
    if (key != "base_weights" && identity_.count("base_weights")) {
      const std::string saved_weights = saved.contains("base_weights") && saved["base_weights"].is_string()
                                            ? saved["base_weights"].get<std::string>()
                                            : std::string("(not recorded)");
      message += " (checkpoint's weights: " + saved_weights + ", this run's: " + identity_.at("base_weights") + ")";
    }
    throw ConfigError(message);
  }
}

}  // namespace sdtrain

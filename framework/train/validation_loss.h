#pragma once
/// The validation loss (data.validation_loss): Model::training_loss averaged over a held-out set
/// at fixed noise and timesteps, so that values are comparable from one evaluation to the next.
///
/// Determinism contract:
///  - held-out sample i always gets the seed sample_seed(run seed, i), whatever the step, epoch,
///    world size or resume: its noise, timestep and posterior sample never change;
///  - its image is resized and centre-cropped to data.transforms.resolution, never flipped;
///  - the set is cut into fixed micro-batches [bB, (b+1)B) in dataset order, rank r evaluates the
///    batches with b mod W = r, and the per-batch sums are gathered into one vector that every
///    rank adds up in batch order. The result is therefore bitwise the same at every world size.
/// A sample that cannot be read is logged and left out (on every world size alike).
#include <cstdint>
#include <memory>

#include "framework/dist/communicator.h"
#include "proto/sdtrain.pb.h"
#include "sdtrain/dataset.h"
#include "sdtrain/model.h"

namespace sdtrain {

class ValidationLoss {
 public:
  /// `transforms` gives the resolution and interpolation (crop and flip are overridden as above).
  ValidationLoss(std::shared_ptr<const Dataset> held_out, const TransformConfig& transforms, int batch_size,
                 uint64_t seed, const BadDataPolicy& bad_data, int rank, int world_size);

  /// The mean per-sample loss over the held-out set with the model's current weights, without
  /// gradients, forward passes under `precision`'s autocast on `device`. Collective: every rank
  /// must call it. Throws DataError when no held-out sample could be read.
  double evaluate(Model& model, Communicator& communicator, Precision precision, const torch::Device& device) const;

  /// The seed of held-out sample `index` (Batch::seeds), independent of everything else.
  static uint64_t sample_seed(uint64_t seed, int64_t index);

  /// The transforms applied to every held-out image.
  const TransformConfig& transforms() const { return transforms_; }
  int64_t size() const { return static_cast<int64_t>(held_out_->size()); }

 private:
  std::shared_ptr<const Dataset> held_out_;
  TransformConfig transforms_;
  int batch_size_;
  uint64_t seed_;
  BadDataPolicy bad_data_;
  int rank_;
  int world_size_;
};

}  // namespace sdtrain

#include "framework/train/validation_loss.h"

#include <algorithm>

#include "framework/data/image_codec.h"
#include "framework/data/sampler.h"
#include "framework/data/transforms.h"
#include "framework/log/logger.h"
#include "framework/train/autocast.h"
#include "sdtrain/errors.h"

namespace sdtrain {

ValidationLoss::ValidationLoss(std::shared_ptr<const Dataset> held_out, const TransformConfig& transforms,
                               int batch_size, uint64_t seed, const BadDataPolicy& bad_data, int rank,
                               int world_size)
    : held_out_(std::move(held_out)),
      transforms_(transforms),
      batch_size_(batch_size),
      seed_(seed),
      bad_data_(bad_data),
      rank_(rank),
      world_size_(world_size) {
  transforms_.set_crop(TransformConfig::CENTER);
  transforms_.set_random_flip(false);
  if (held_out_->size() == 0) throw ConfigError("data.validation_loss: the held-out set is empty");
}

uint64_t ValidationLoss::sample_seed(uint64_t seed, int64_t index) {
  return mix_seed(seed, static_cast<uint64_t>(index), 0x7A11D5EEDULL);
}

double ValidationLoss::evaluate(Model& model, Communicator& communicator, Precision precision,
                                const torch::Device& device) const {
  const int64_t size = this->size();
  const int64_t batches = (size + batch_size_ - 1) / batch_size_;
  // Per batch: the sum of its samples' losses and their count; zero where another rank works.
  std::vector<double> local(static_cast<std::size_t>(2 * batches), 0.0);
  torch::NoGradGuard no_grad;
  for (int64_t b = rank_; b < batches; b += world_size_) {
    Batch batch;
    std::vector<torch::Tensor> images;
    for (int64_t index = b * batch_size_; index < std::min(size, (b + 1) * batch_size_); ++index) {
      Sample sample;
      try {
        sample = held_out_->get(static_cast<std::size_t>(index));
        if (sample.image.empty()) {
          if (sample.encoded.empty()) throw DataError(sample.key + ": the sample has no image");
          sample.image = decode_image(sample.encoded, sample.key, bad_data_.max_image_pixels());
        }
        images.push_back(apply_transforms(sample.image, transforms_, 0));
      } catch (const DataError& error) {
        SDTRAIN_LOG_ALL_RANKS(WARNING) << "validation loss: leaving out held-out sample " << index << ": "
                                       << error.what();
        continue;
      }
      batch.captions.push_back(sample.caption);
      batch.keys.push_back(sample.key);
      batch.seeds.push_back(sample_seed(seed_, index));
    }
    if (images.empty()) continue;
    batch.pixels = torch::stack(images);
    if (device.is_cuda()) batch.pixels = batch.pixels.to(device);
    torch::Tensor loss;
    {
      AutocastScope autocast(precision, device);
      loss = model.training_loss(batch);
    }
    const auto count = static_cast<double>(images.size());
    local[static_cast<std::size_t>(2 * b)] = loss.to(torch::kFloat64).item<double>() * count;
    local[static_cast<std::size_t>(2 * b + 1)] = count;
  }
  torch::Tensor sums = torch::tensor(local, torch::kFloat64);
  communicator.allreduce_sum(sums);  // adding zeros is exact: every slot holds one rank's value
  sums = sums.contiguous();
  const double* values = sums.data_ptr<double>();
  double total = 0;
  double count = 0;
  for (int64_t b = 0; b < batches; ++b) {
    total += values[2 * b];
    count += values[2 * b + 1];
  }
  if (count == 0) throw DataError("validation loss: no held-out sample could be read");
  return total / count;
}

}  // namespace sdtrain

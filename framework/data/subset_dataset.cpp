#include "framework/data/subset_dataset.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "framework/data/sampler.h"
#include "sdtrain/errors.h"

namespace sdtrain {

SubsetDataset::SubsetDataset(std::shared_ptr<const Dataset> base, std::vector<int64_t> indices)
    : base_(std::move(base)), indices_(std::move(indices)) {}

Sample SubsetDataset::get(std::size_t index) const { return base_->get(static_cast<std::size_t>(indices_.at(index))); }

HeldOutSplit split_held_out(int64_t size, double fraction, uint64_t seed) {
  const auto count = std::max<int64_t>(1, std::llround(static_cast<double>(size) * fraction));
  if (count >= size) {
    throw ConfigError("data.validation_loss.held_out_fraction: holding out " + std::to_string(count) + " of " +
                      std::to_string(size) + " training samples leaves none to train on");
  }
  // The sampler's epoch permutation with a seed of its own: platform-independent.
  const DistributedSampler shuffler(size, 1, 0, 1, /*shuffle=*/true, mix_seed(seed, 0x4E1D0u));
  const std::vector<int64_t> order = shuffler.permutation(0);
  HeldOutSplit split;
  split.held_out.assign(order.begin(), order.begin() + count);
  split.train.assign(order.begin() + count, order.end());
  std::sort(split.held_out.begin(), split.held_out.end());
  std::sort(split.train.begin(), split.train.end());
  return split;
}

}  // namespace sdtrain

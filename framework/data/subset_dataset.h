#pragma once
/// A view of some examples of another dataset, and the seeded train / held-out split that
/// data.validation_loss.held_out_fraction makes with it (as torch.utils.data.random_split).
#include <cstdint>
#include <memory>
#include <vector>

#include "sdtrain/dataset.h"

namespace sdtrain {

class SubsetDataset : public Dataset {
 public:
  /// Example i of the view is example indices[i] of `base` (each must be < base->size()).
  SubsetDataset(std::shared_ptr<const Dataset> base, std::vector<int64_t> indices);
  std::size_t size() const override { return indices_.size(); }
  Sample get(std::size_t index) const override;

 private:
  std::shared_ptr<const Dataset> base_;
  std::vector<int64_t> indices_;
};

struct HeldOutSplit {
  std::vector<int64_t> train;     ///< ascending
  std::vector<int64_t> held_out;  ///< ascending
};

/// Splits [0, size) into max(1, round(size x fraction)) held-out indices, the first ones of a
/// splitmix64 Fisher-Yates permutation seeded by `seed` (the same on every platform and rank), and
/// the rest for training. Throws ConfigError when nothing would be left to train on.
HeldOutSplit split_held_out(int64_t size, double fraction, uint64_t seed);

}  // namespace sdtrain

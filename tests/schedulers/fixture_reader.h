#pragma once
/// Reads the reference files written by make_scheduler_fixtures.py (torch.save of dicts/lists).
#include <string>
#include <vector>

#include <torch/torch.h>

namespace sdtrain {
namespace test {

/// The fixture directory $SDTRAIN_FIXTURE_DIR/schedulers_ref (throws if the variable is unset).
std::string scheduler_fixture_dir();

/// torch::pickle_load of a whole file.
c10::IValue load_pickle(const std::string& path);

/// One saved dict.
class FixtureDict {
 public:
  explicit FixtureDict(const std::string& path);
  torch::Tensor tensor(const std::string& key) const;
  std::string str(const std::string& key) const;
  int64_t integer(const std::string& key) const;
  double real(const std::string& key) const;

 private:
  c10::impl::GenericDict dict_;
};

/// max |a - b| over all elements (as float64); both must have the same shape.
double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace test
}  // namespace sdtrain

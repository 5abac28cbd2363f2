#include "tests/schedulers/fixture_reader.h"

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <stdexcept>

namespace sdtrain {
namespace test {

std::string scheduler_fixture_dir() {
  const char* dir = std::getenv("SDTRAIN_FIXTURE_DIR");
  if (dir == nullptr) throw std::runtime_error("SDTRAIN_FIXTURE_DIR is not set (run through ctest)");
  return std::string(dir) + "/schedulers_ref";
}

c10::IValue load_pickle(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open fixture " + path);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return torch::pickle_load(bytes);
}

FixtureDict::FixtureDict(const std::string& path) : dict_(load_pickle(path).toGenericDict()) {}

torch::Tensor FixtureDict::tensor(const std::string& key) const { return dict_.at(key).toTensor(); }
std::string FixtureDict::str(const std::string& key) const { return dict_.at(key).toStringRef(); }
int64_t FixtureDict::integer(const std::string& key) const { return dict_.at(key).toInt(); }
double FixtureDict::real(const std::string& key) const { return dict_.at(key).toDouble(); }

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.sizes() != b.sizes()) throw std::runtime_error("shape mismatch in max_abs_diff");
  if (a.numel() == 0) return 0;
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

}  // namespace test
}  // namespace sdtrain

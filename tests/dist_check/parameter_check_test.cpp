// The parameter-hash check (framework/dist/parameter_check.h) and the backend choice
// (framework/dist/communicator_factory.h). Links libsdtrain only (no plugins), so it builds fast.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <torch/torch.h>

#include "framework/dist/communicator_factory.h"
#include "framework/dist/parameter_check.h"
#include "sdtrain/errors.h"
#include "tests/common/test_env.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

using test::mpirun;

std::string run_probe(int ranks, int perturbed) {
  std::string output;
  const int code = test::run_command(mpirun(ranks) + " " + (test::binary_dir() / "bin" / "parameter_check_probe").string() +
                                         " " + std::to_string(perturbed),
                                     &output);
  EXPECT_EQ(code, 0) << output;
  return output;
}

TEST(TensorBytesHash, ChangesWithAnyBitAndNothingElse) {
  torch::manual_seed(1);
  const torch::Tensor values = torch::randn({1001});
  const uint64_t hash = tensor_bytes_hash(values);
  EXPECT_EQ(tensor_bytes_hash(values.clone()), hash);
  // Chunking (host staging of device tensors) does not change the hash.
  EXPECT_EQ(tensor_bytes_hash(values, 64), hash);
  EXPECT_EQ(tensor_bytes_hash(values, 1), hash);
  for (int64_t index : {0, 500, 1000}) {
    torch::Tensor flipped = values.clone();
    reinterpret_cast<int32_t*>(flipped.data_ptr<float>())[index] ^= 1;
    EXPECT_NE(tensor_bytes_hash(flipped), hash) << "bit 0 of element " << index;
  }
  // -0.0 and 0.0 compare equal as numbers but are different parameters bit for bit.
  EXPECT_NE(tensor_bytes_hash(torch::zeros({4})), tensor_bytes_hash(-torch::zeros({4})));
  // Same bytes, different dtype or length: different hashes.
  EXPECT_NE(tensor_bytes_hash(torch::zeros({4}, torch::kInt32)), tensor_bytes_hash(torch::zeros({4})));
  EXPECT_NE(tensor_bytes_hash(torch::zeros({4})), tensor_bytes_hash(torch::zeros({5})));
}

TEST(ParameterCheck, EqualParametersPassOnTwoRanks) {
  const std::string output = run_probe(2, -1);
  EXPECT_NE(output.find("rank 0: ok"), std::string::npos) << output;
  EXPECT_NE(output.find("rank 1: ok"), std::string::npos) << output;
}

TEST(ParameterCheck, OneFlippedBitStopsEveryRankNamingTheRank) {
  const std::string output = run_probe(3, 2);
  for (int rank : {0, 1, 2}) {
    const std::string expected = "rank " + std::to_string(rank) +
                                 ": error: parameter check in the probe: rank 2 holds parameters different from rank 0's";
    EXPECT_NE(output.find(expected), std::string::npos) << output;
  }
  EXPECT_EQ(output.find(": ok"), std::string::npos) << output;
}

TEST(CommunicatorFactory, AutoAndMpiGiveMpiOnCpu) {
  const RankInfo single;
  EXPECT_EQ(make_communicator(CommunicatorBackend::kAuto, single, torch::Device(torch::kCPU), 10)->backend(), "mpi");
  EXPECT_EQ(make_communicator(CommunicatorBackend::kMpi, single, torch::Device(torch::kCPU), 10)->backend(), "mpi");
}

TEST(CommunicatorFactory, NcclOnACpuRankIsAConfigErrorNamingTheField) {
  try {
    make_communicator(CommunicatorBackend::kNccl, RankInfo{}, torch::Device(torch::kCPU), 10);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& error) {
    const std::string text = error.what();
    EXPECT_EQ(text.rfind("distributed.backend: NCCL", 0), 0u) << text;
    EXPECT_NE(text.find(nccl_compiled_in() ? "needs a CUDA device" : "built without NCCL"), std::string::npos) << text;
  }
}

}  // namespace
}  // namespace sdtrain

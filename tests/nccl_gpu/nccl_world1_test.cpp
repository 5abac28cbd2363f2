// The NCCL backend on one GPU (world size 1: a real one-rank NCCL communicator). Needs a CUDA
// device; every test skips without one. Run on a GPU machine by launch/check_nccl_gpu.sh.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include <ATen/cuda/Sleep.h>
#include <torch/torch.h>

#include "framework/dist/communicator_factory.h"
#include "framework/dist/parameter_check.h"
#include "framework/dist/process_group.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

/// MPI (for the unique id) once per process; the tests share one communicator.
Communicator& nccl() {
  static ProcessGroup group;
  static std::unique_ptr<Communicator> communicator =
      make_communicator(CommunicatorBackend::kNccl, group.info(), torch::Device(torch::kCUDA, 0), 60.0);
  return *communicator;
}

class NcclWorldSizeOne : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_F(NcclWorldSizeOne, AutoPicksNcclOnCuda) {
  EXPECT_EQ(nccl().backend(), "nccl");
  EXPECT_EQ(nccl().world_size(), 1);
  EXPECT_EQ(nccl().rank(), 0);
}

TEST_F(NcclWorldSizeOne, AllreduceAndBroadcastKeepEveryDtypeExact) {
  for (const auto dtype : {torch::kFloat32, torch::kFloat16, torch::kBFloat16, torch::kFloat64, torch::kInt64}) {
    const torch::Tensor expected = torch::arange(0, 1 << 20, torch::kFloat64).remainder(977).to(dtype);
    // Written on the compute stream behind a long kernel: the collective must wait for it.
    torch::Tensor values = torch::zeros({1 << 20}, torch::TensorOptions().dtype(dtype).device(torch::kCUDA, 0));
    at::cuda::sleep(int64_t{200} * 1000 * 1000);
    values.copy_(expected.to(values.device()), /*non_blocking=*/true);
    nccl().allreduce_sum(values);
    EXPECT_TRUE(torch::equal(values.cpu(), expected)) << dtype;
    nccl().broadcast(values, 0);
    EXPECT_TRUE(torch::equal(values.cpu(), expected)) << dtype;
  }
  nccl().barrier();
}

TEST_F(NcclWorldSizeOne, CpuTensorsGoThroughMpi) {
  torch::Tensor stats = torch::tensor({1.5, 2.0}, torch::kFloat64);
  nccl().allreduce_sum(stats);
  EXPECT_TRUE(torch::equal(stats, torch::tensor({1.5, 2.0}, torch::kFloat64)));
}

TEST_F(NcclWorldSizeOne, RefusesWhatItCannotDo) {
  torch::Tensor strided = torch::zeros({4, 4}, torch::Device(torch::kCUDA, 0)).t();
  EXPECT_THROW(nccl().allreduce_sum(strided), c10::Error);
  torch::Tensor complex = torch::zeros({4}, torch::TensorOptions().dtype(torch::kComplexFloat).device(torch::kCUDA, 0));
  EXPECT_THROW(nccl().allreduce_sum(complex), c10::Error);
  torch::Tensor values = torch::zeros({4}, torch::Device(torch::kCUDA, 0));
  EXPECT_THROW(nccl().broadcast(values, 1), c10::Error);
}

TEST_F(NcclWorldSizeOne, DeviceHashEqualsHostHash) {
  const torch::Tensor values = torch::randn({3 << 20});
  EXPECT_EQ(tensor_bytes_hash(values.to(torch::kCUDA)), tensor_bytes_hash(values));
  verify_same_parameters(values.to(torch::kCUDA), nccl(), "on one GPU");
}

/// A collective stuck behind the compute stream past distributed.collective_timeout_s ends the
/// process with a message naming the rank and the collective (the hang detector's path).
TEST_F(NcclWorldSizeOne, ATimedOutCollectiveAbortsNamingRankAndCollective) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // re-executes: CUDA does not survive fork
  EXPECT_EXIT(
      {
        static ProcessGroup group;
        auto communicator =
            make_communicator(CommunicatorBackend::kNccl, group.info(), torch::Device(torch::kCUDA, 0), 0.5);
        torch::Tensor values = torch::ones({1024}, torch::Device(torch::kCUDA, 0));
        at::cuda::sleep(int64_t{1} << 40);  // far longer than the timeout
        communicator->allreduce_sum(values);
      },
      [](int status) { return !(WIFEXITED(status) && WEXITSTATUS(status) == 0); },
      "rank 0: NCCL allreduce of 1024 Float elements did not complete within distributed.collective_timeout_s");
}

/// Not an assertion: the world-size-1 cost of allreducing a UNet's worth of fp32 gradients
/// (859,520,964 parameters) in 25 MB buckets, for bench/RESULTS.md.
TEST_F(NcclWorldSizeOne, ReportsUnetGradientAllreduceTime) {
  const int64_t numel = 859520964;
  torch::Tensor grads = torch::ones({numel}, torch::Device(torch::kCUDA, 0));
  const int64_t bucket = (int64_t{25} << 20) / 4;
  auto pass = [&] {
    for (int64_t start = 0; start < numel; start += bucket) {
      torch::Tensor slice = grads.narrow(0, start, std::min(bucket, numel - start));
      nccl().allreduce_sum(slice);
    }
  };
  pass();  // warm-up
  const auto start = std::chrono::steady_clock::now();
  pass();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[nccl] world size 1: allreduce of %lld fp32 gradients in %lld-element buckets: %.3f s (%.1f GB/s)\n",
              static_cast<long long>(numel), static_cast<long long>(bucket), seconds, numel * 4.0 / seconds / 1e9);
  RecordProperty("unet_allreduce_seconds", std::to_string(seconds));
  EXPECT_TRUE(torch::equal(grads.narrow(0, numel - 8, 8).cpu(), torch::ones({8})));
}

}  // namespace
}  // namespace sdtrain

// The NCCL backend on one GPU (world size 1: a real one-rank NCCL communicator). Needs a CUDA
// device; every test skips without one. Run on a GPU machine by launch/check_nccl_gpu.sh (through
// launch/gpu/run_nccl_tests.sh, which runs the death test alone: see its comment).
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

#include <ATen/cuda/Sleep.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/torch.h>

#include "framework/dist/communicator_factory.h"
#include "framework/dist/parameter_check.h"
#include "framework/dist/process_group.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

ProcessGroup& process_group() {
  static ProcessGroup group;  // MPI (for the unique id) once per process
  return group;
}

std::unique_ptr<Communicator> make_test_communicator(double timeout_s) {
  return make_communicator(CommunicatorBackend::kNccl, process_group().info(), torch::Device(torch::kCUDA, 0),
                           timeout_s);
}

std::unique_ptr<Communicator>& shared_communicator() {
  static std::unique_ptr<Communicator> communicator;
  return communicator;
}

/// The communicator the tests share, made on first use.
Communicator& nccl() {
  std::unique_ptr<Communicator>& communicator = shared_communicator();
  if (!communicator) communicator = make_test_communicator(60.0);
  return *communicator;
}

/// Destroys the shared communicator when the tests end, before main returns: a static destructor
/// would run after the CUDA runtime and NCCL began their own exit-time teardown, where finalising
/// a communicator can fail or hang.
class CommunicatorTeardown : public ::testing::Environment {
 public:
  void TearDown() override { shared_communicator().reset(); }
};
[[maybe_unused]] ::testing::Environment* const communicator_teardown =
    ::testing::AddGlobalTestEnvironment(new CommunicatorTeardown);

/// An event recorded on the current CUDA stream at construction. (The runtime API directly:
/// ATen/cuda/CUDAEvent.h includes the cuSPARSE headers, which the toolkits of the CI machine and
/// the lent GPU machines do not have.)
class RecordedEvent {
 public:
  RecordedEvent() {
    TORCH_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming) == cudaSuccess, "cudaEventCreateWithFlags");
    TORCH_CHECK(cudaEventRecord(event_, c10::cuda::getCurrentCUDAStream().stream()) == cudaSuccess, "cudaEventRecord");
  }
  ~RecordedEvent() { cudaEventDestroy(event_); }
  RecordedEvent(const RecordedEvent&) = delete;
  RecordedEvent& operator=(const RecordedEvent&) = delete;
  /// Whether the device has reached the event (cudaEventQuery).
  bool reached() const { return cudaEventQuery(event_) == cudaSuccess; }

 private:
  cudaEvent_t event_ = nullptr;
};

/// Zeroes `values`, queues a long kernel on the current (compute) stream and then, behind it, a
/// device-to-device copy of `expected` (already on the GPU, so nothing on the host waits for the
/// kernel) into `values`. Returns an event recorded after the copy: a collective that orders
/// itself after the compute stream cannot finish before the device has reached that event.
RecordedEvent write_behind_long_kernel(torch::Tensor& values, const torch::Tensor& expected) {
  values.zero_();
  at::cuda::sleep(int64_t{200} * 1000 * 1000);  // clock cycles: ~0.1 s
  values.copy_(expected, /*non_blocking=*/true);
  return RecordedEvent();
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
    const torch::Tensor expected_on_gpu = expected.to(torch::Device(torch::kCUDA, 0));
    torch::Tensor values = torch::empty_like(expected_on_gpu);
    // At world size 1 the result equals the input whenever the collective runs, so the values
    // alone cannot show the order: the event does. Had the collective not waited for the compute
    // stream, it would have finished while the long kernel still ran, before the copy.
    for (const std::string collective : {"allreduce", "broadcast"}) {
      const RecordedEvent written = write_behind_long_kernel(values, expected_on_gpu);
      if (collective == "allreduce") {
        nccl().allreduce_sum(values);
      } else {
        nccl().broadcast(values, 0);
      }
      EXPECT_TRUE(written.reached()) << dtype << ": the " << collective << " finished before the copy queued ahead of it";
      EXPECT_TRUE(torch::equal(values.cpu(), expected)) << dtype << ", " << collective;
    }
  }
  nccl().barrier();
}

/// The gradient buckets' path (ncclAvg): started from the compute stream, awaited later.
TEST_F(NcclWorldSizeOne, AsyncAllreduceWaitsForTheComputeStream) {
  const torch::Tensor expected = torch::arange(0, 1 << 20, torch::kFloat32);
  const torch::Tensor expected_on_gpu = expected.to(torch::Device(torch::kCUDA, 0));
  torch::Tensor values = torch::empty_like(expected_on_gpu);
  const RecordedEvent written = write_behind_long_kernel(values, expected_on_gpu);
  std::unique_ptr<PendingCollective> pending = nccl().allreduce_async(values, ReduceOp::kAverage);
  pending->wait();
  EXPECT_TRUE(written.reached()) << "the allreduce finished before the copy queued ahead of it";
  EXPECT_TRUE(pending->test());
  EXPECT_TRUE(torch::equal(values.cpu(), expected));
}

/// A communicator of its own, destroyed while the shared one lives on: teardown (finalize,
/// destroy) returns, and leaves the other communicator working.
TEST_F(NcclWorldSizeOne, ASecondCommunicatorIsTornDownCleanly) {
  torch::Tensor values = torch::ones({1024}, torch::Device(torch::kCUDA, 0));
  {
    std::unique_ptr<Communicator> second = make_test_communicator(60.0);
    second->allreduce_sum(values);
    const auto start = std::chrono::steady_clock::now();
    second.reset();
    // release() gives up on finalising after the communicator's 60 s timeout and aborts instead.
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 10.0);
  }
  nccl().allreduce_sum(values);
  EXPECT_TRUE(torch::equal(values.cpu(), torch::ones({1024})));
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

/// Death tests: launch/gpu/run_nccl_tests.sh runs this suite apart from the rest, each test in a
/// fresh process whose environment holds no MPI job, under a short timeout of its own.
using NcclWorldSizeOneDeathTest = NcclWorldSizeOne;

/// A collective stuck behind the compute stream past distributed.collective_timeout_s ends the
/// process with a message naming the rank and the collective (the hang detector's path).
TEST_F(NcclWorldSizeOneDeathTest, ATimedOutCollectiveAbortsNamingRankAndCollective) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // re-executes: CUDA does not survive fork
  EXPECT_EXIT(
      {
        std::unique_ptr<Communicator> communicator = make_test_communicator(0.5);
        torch::Tensor values = torch::ones({1024}, torch::Device(torch::kCUDA, 0));
        at::cuda::sleep(int64_t{1} << 40);  // far longer than the timeout
        communicator->allreduce_sum(values);
      },
      [](int status) { return !(WIFEXITED(status) && WEXITSTATUS(status) == 0); },
      "rank 0: NCCL allreduce of 1024 Float elements did not complete within distributed.collective_timeout_s");
}

/// Not an assertion: the world-size-1 cost of allreducing a UNet's worth of fp32 gradients
/// (859,520,964 parameters) in buckets of 25 MB (distributed.bucket_size_mb's default), 100 MB and
/// 200 MB, for bench/RESULTS.md. At world size 1 NCCL moves no data, so this is the per-bucket
/// cost of the path (events, the NCCL call, the host's wait), the floor under any world size.
TEST_F(NcclWorldSizeOne, ReportsUnetGradientAllreduceTime) {
  const int64_t numel = 859520964;
  torch::Tensor grads = torch::ones({numel}, torch::Device(torch::kCUDA, 0));
  for (const int64_t bucket_mb : {25, 100, 200}) {
    const int64_t bucket = (bucket_mb << 20) / 4;
    auto pass = [&] {
      for (int64_t start = 0; start < numel; start += bucket) {
        torch::Tensor slice = grads.narrow(0, start, std::min(bucket, numel - start));
        nccl().allreduce_sum(slice);
      }
    };
    pass();  // warm-up
    const auto start = std::chrono::steady_clock::now();
    pass();  // each allreduce_sum returns once its collective finished on the device
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("[nccl] world size 1: allreduce of %lld fp32 gradients (SD v1 UNet) in %lld MB buckets: %.4f s "
                "(%.1f GB/s)\n",
                static_cast<long long>(numel), static_cast<long long>(bucket_mb), seconds, numel * 4.0 / seconds / 1e9);
    RecordProperty("unet_allreduce_seconds_" + std::to_string(bucket_mb) + "mb", std::to_string(seconds));
  }
  EXPECT_TRUE(torch::equal(grads.narrow(0, numel - 8, 8).cpu(), torch::ones({8})));
}

}  // namespace
}  // namespace sdtrain

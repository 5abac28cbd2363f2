// The process-wide CUDA math options follow run.allow_tf32 / run.cudnn_benchmark for a CUDA
// device and stay as they were for the CPU. Setting them needs no GPU.
#include <gtest/gtest.h>

#include <ATen/Context.h>

#include "framework/dist/device_choice.h"

namespace sdtrain {
namespace {

struct CudaMath {
  bool tf32_matmul;
  bool tf32_conv;
  bool benchmark;
};

CudaMath current() {
  const at::Context& context = at::globalContext();
  return {context.allowTF32CuBLAS(), context.allowTF32CuDNN(), context.benchmarkCuDNN()};
}

TEST(CudaMathSettings, FollowTheConfigOnCudaAndLeaveTheCpuAlone) {
  const CudaMath before = current();
  apply_cuda_math_settings(torch::Device("cuda:0"), /*allow_tf32=*/true, /*cudnn_benchmark=*/true);
  EXPECT_TRUE(current().tf32_matmul);
  EXPECT_TRUE(current().tf32_conv);
  EXPECT_TRUE(current().benchmark);

  apply_cuda_math_settings(torch::Device(torch::kCPU), false, false);
  EXPECT_TRUE(current().tf32_matmul);
  EXPECT_TRUE(current().benchmark);

  apply_cuda_math_settings(torch::Device("cuda:0"), false, false);
  EXPECT_FALSE(current().tf32_matmul);
  EXPECT_FALSE(current().tf32_conv);
  EXPECT_FALSE(current().benchmark);

  at::globalContext().setAllowTF32CuBLAS(before.tf32_matmul);
  at::globalContext().setAllowTF32CuDNN(before.tf32_conv);
  at::globalContext().setBenchmarkCuDNN(before.benchmark);
}

}  // namespace
}  // namespace sdtrain

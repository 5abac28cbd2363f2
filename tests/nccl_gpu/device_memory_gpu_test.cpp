// peak_device_memory_bytes on a real GPU: it follows PyTorch's caching allocator (what the
// progress line and train_step_bench report). Skips without a CUDA device.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "framework/train/device_memory.h"

namespace sdtrain {
namespace {

TEST(DeviceMemory, PeakCountsTensorsAndResets) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const torch::Device device(torch::kCUDA, 0);
  constexpr int64_t kBytes = 256LL << 20;
  reset_peak_device_memory(device);
  const int64_t before = peak_device_memory_bytes(device);
  ASSERT_GE(before, 0);
  {
    const torch::Tensor block = torch::empty({kBytes}, torch::TensorOptions().dtype(torch::kUInt8).device(device));
    EXPECT_GE(peak_device_memory_bytes(device), before + kBytes);
  }
  // Freed, the block still counts towards the peak until a reset.
  EXPECT_GE(peak_device_memory_bytes(device), before + kBytes);
  reset_peak_device_memory(device);
  EXPECT_LT(peak_device_memory_bytes(device), before + kBytes);
  EXPECT_EQ(peak_device_memory_bytes(torch::Device(torch::kCPU)), -1);
}

}  // namespace
}  // namespace sdtrain

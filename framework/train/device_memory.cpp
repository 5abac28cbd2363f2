#include "framework/train/device_memory.h"

#ifdef SDTRAIN_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace sdtrain {

int64_t peak_device_memory_bytes(const torch::Device& device) {
#ifdef SDTRAIN_WITH_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.has_index() ? device.index() : c10::cuda::current_device());
    return stats.allocated_bytes[0].peak;  // entry 0: StatType::AGGREGATE, over all pools
  }
#else
  (void)device;
#endif
  return -1;
}

void reset_peak_device_memory(const torch::Device& device) {
#ifdef SDTRAIN_WITH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.has_index() ? device.index() : c10::cuda::current_device());
#else
  (void)device;
#endif
}

}  // namespace sdtrain

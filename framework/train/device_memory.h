#pragma once
/// Peak memory of a CUDA device as PyTorch's caching allocator counts it: what
/// torch.cuda.max_memory_allocated() reports in Python, so figures compare with the reference's.
#include <cstdint>

#include <torch/torch.h>

namespace sdtrain {

/// The most bytes of tensors held at once on `device` since the process started or since the last
/// reset_peak_device_memory(); -1 for a device that is not CUDA or a build without CUDA.
int64_t peak_device_memory_bytes(const torch::Device& device);

/// Starts a new peak for `device` (no-op off CUDA).
void reset_peak_device_memory(const torch::Device& device);

}  // namespace sdtrain

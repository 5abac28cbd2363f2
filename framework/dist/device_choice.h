#pragma once
/// Which device this rank trains on. Lives apart from the trainer because the communicator's
/// backend (NCCL for CUDA, MPI for CPU) must be chosen from the same answer before the trainer
/// exists.
#include <string>

#include <torch/types.h>

namespace sdtrain {

/// `wanted` is run.device: "auto" (CUDA device local_rank % count when CUDA is available, CPU
/// otherwise), "cpu", "cuda" (device local_rank % count) or "cuda:N". Throws ConfigError naming
/// run.device when CUDA is asked for but none is available.
torch::Device pick_device(const std::string& wanted, int local_rank);

/// Makes a CUDA `device` this process's current device (as torch.cuda.set_device), so that calls
/// that take no device index (the current stream, synchronize, pinned host allocations, NCCL's
/// communicator set-up) land on this rank's GPU rather than on GPU 0. Nothing for the CPU.
/// Call it right after pick_device, before anything touches CUDA.
void make_current_device(const torch::Device& device);

/// For a CUDA `device`, sets the process-wide CUDA math options (run.allow_tf32: TensorFloat-32
/// for float32 matmuls and cuDNN convolutions; run.cudnn_benchmark: cuDNN's algorithm search per
/// input shape). Leaves them untouched for the CPU, where they mean nothing.
void apply_cuda_math_settings(const torch::Device& device, bool allow_tf32, bool cudnn_benchmark);

}  // namespace sdtrain

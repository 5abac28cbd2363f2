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

}  // namespace sdtrain

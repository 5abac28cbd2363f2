#pragma once
/// Chooses and builds the Communicator for a run (distributed.backend). Kept free of the config
/// schema so that the CUDA build check (launch/check_cuda_build.sh) can compile the backends
/// without generating the protobuf code.
#include <memory>

#include <torch/types.h>

#include "framework/dist/communicator.h"

namespace sdtrain {

/// Mirrors DistributedConfig.Backend.
enum class CommunicatorBackend { kAuto, kMpi, kNccl };

/// True when this build has the NCCL backend (torch with CUDA and NCCL found at configure time).
bool nccl_compiled_in();

/// kAuto → NCCL when `device` is CUDA and NCCL was compiled in, MPI otherwise; kMpi → MPI (CUDA
/// tensors are then staged through host memory by the gradient synchronisation); kNccl → NCCL.
/// Throws ConfigError naming distributed.backend when NCCL is requested but this build lacks it
/// or `device` is not a CUDA device. `timeout_s` is distributed.collective_timeout_s.
std::unique_ptr<Communicator> make_communicator(CommunicatorBackend requested, const RankInfo& info,
                                                const torch::Device& device, double timeout_s);

}  // namespace sdtrain

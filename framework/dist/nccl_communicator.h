#pragma once
/// The NCCL backend of Communicator, for CUDA tensors. Defined only in builds with
/// SDTRAIN_WITH_NCCL (torch with CUDA and the NCCL library found at configure time); select it
/// through make_communicator() (communicator_factory.h), which refuses it in other builds.
#include <memory>

#include <torch/types.h>

#include "framework/dist/communicator.h"

namespace sdtrain {

/// One NCCL communicator over all ranks of the job on `device` (this rank's CUDA device). Rank 0
/// makes the ncclUniqueId and MPI broadcasts it, so MPI (the ProcessGroup) must be up.
///
/// Ordering: each collective waits (CUDA event) for the work already queued on the caller's
/// current CUDA stream, runs on the communicator's own stream, and the current stream then waits
/// for it, so tensors are safe to use on the current stream afterwards. The call returns once
/// the collective has finished on the device: that is where the timeout is enforced.
///
/// Timeouts: initialisation and every collective are polled (ncclCommGetAsyncError and
/// cudaEventQuery) against `timeout_s` (distributed.collective_timeout_s). A collective that does
/// not finish in time, or an asynchronous NCCL error (a peer died, a network fault), aborts the
/// NCCL communicator and then the whole job (ProcessGroup::abort_job) with a message naming this
/// rank and the collective: a peer that is gone never leaves the others waiting forever.
///
/// CPU tensors (loss statistics, the parameter-hash check) go through an MPI communicator with
/// the same timeout. CUDA tensors must be contiguous, on `device`, and float32, float16,
/// bfloat16, float64, int32, int64, int8 or uint8. World size 1 runs real NCCL calls (a one-rank
/// communicator), so a single GPU exercises the whole path.
///
/// Every collective, on CUDA or CPU tensors, is numbered from 1 and passes the fault point
/// collective.before at its number, as in the MPI backend (make_mpi_communicator).
std::unique_ptr<Communicator> make_nccl_communicator(const RankInfo& info, const torch::Device& device,
                                                     double timeout_s);

}  // namespace sdtrain

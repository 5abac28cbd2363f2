#pragma once
/// Collectives over the ranks of a job. Two backends: MPI for CPU tensors (so the whole
/// distributed path runs on CPU machines) and NCCL for CUDA tensors.
#include <memory>
#include <string>

#include <torch/types.h>

#include "framework/dist/process_group.h"

namespace sdtrain {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  /// In-place sum over all ranks. `tensor` must be contiguous.
  virtual void allreduce_sum(torch::Tensor& tensor) = 0;
  /// In-place: every rank receives root's `tensor` (same shape and dtype on all ranks).
  virtual void broadcast(torch::Tensor& tensor, int root) = 0;
  /// Blocks until every rank arrived (within the communicator's collective timeout).
  virtual void barrier() = 0;
  /// A barrier with its own timeout, for fences around work whose length differs from rank to
  /// rank (rank 0 writing a checkpoint): `purpose` names it in the timeout message.
  virtual void barrier(double timeout_s, const std::string& purpose) = 0;
  /// Backend name for logs ("mpi", "nccl").
  virtual std::string backend() const = 0;
};

/// The MPI backend over MPI_COMM_WORLD for CPU tensors. Every collective is non-blocking MPI
/// polled against `timeout_s`: one that does not complete in time aborts the job instead of
/// waiting forever. Before aborting, the ranks that timed out tell each other (point to point, on
/// a private duplicate of the communicator) which collective they wait in, for a short grace
/// period (a tenth of the timeout, 2 to 10 s); the lowest of them prints one message naming the
/// collective, its sequence number and the ranks that never arrived (the hung or dead ones).
///
/// Test hook (test-only, never set it in production): with SDTRAIN_TEST_STALL_RANK=r and
/// SDTRAIN_TEST_STALL_AT_COLLECTIVE=n (default 1) in its environment, rank r stops forever just
/// before its n-th collective, as a hung GPU or a deadlocked data worker would.
std::unique_ptr<Communicator> make_mpi_communicator(const RankInfo& info, double timeout_s);

}  // namespace sdtrain

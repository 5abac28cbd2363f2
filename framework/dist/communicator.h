#pragma once
/// Collectives over the ranks of a job. Two backends: MPI for CPU tensors (so the whole
/// distributed path runs on CPU machines) and NCCL for CUDA tensors.
#include <memory>
#include <string>

#include <torch/types.h>

#include "framework/dist/process_group.h"

namespace sdtrain {

/// A collective that was started and has not been awaited yet (Communicator::allreduce_sum_async).
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  /// Gives the backend a chance to progress the collective without blocking (MPI progresses
  /// non-blocking collectives only inside MPI calls); true once it has completed.
  virtual bool test() = 0;
  /// Blocks until the collective has completed, within the communicator's collective timeout
  /// (counted from this call); afterwards the tensor holds the result and is safe to use on the
  /// caller's current stream. Calling it again is a no-op.
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  /// In-place sum over all ranks. `tensor` must be contiguous.
  virtual void allreduce_sum(torch::Tensor& tensor) = 0;
  /// Starts an in-place sum over all ranks and returns without waiting for it. Every rank must
  /// start the same collectives in the same order, and `tensor` (contiguous) must stay alive and
  /// unmodified until wait() returns. Other collectives may be issued while it is in flight; they
  /// count in the same order on every rank. Used to overlap gradient allreduce with backward.
  virtual std::unique_ptr<PendingCollective> allreduce_sum_async(const torch::Tensor& tensor) = 0;
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

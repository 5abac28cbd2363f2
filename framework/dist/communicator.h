#pragma once
/// Collectives over the ranks of a job. Two backends: MPI for CPU tensors (so the whole
/// distributed path runs on CPU machines) and NCCL for CUDA tensors.
#include <memory>
#include <string>

#include <torch/types.h>

#include "framework/dist/process_group.h"

namespace sdtrain {

/// A collective that was started and has not been awaited yet (Communicator::allreduce_async).
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

/// The reduction of an allreduce. kAverage is the sum divided by the world size: NCCL folds the
/// division into the collective (ncclAvg, which scales each input by 1/world_size before summing,
/// so it rounds differently from sum-then-divide); MPI, which has no average, divides the summed
/// result once it has arrived.
enum class ReduceOp { kSum, kAverage };

/// Whether a communicator passes the collective.before fault point before each collective.
/// kOff is for a communicator used inside another that counts the collectives itself (the NCCL
/// backend's MPI communicator for CPU tensors), so that each collective is counted once.
enum class CollectiveFaultPoints { kOn, kOff };

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  /// In-place sum over all ranks. `tensor` must be contiguous.
  virtual void allreduce_sum(torch::Tensor& tensor) = 0;
  /// Starts an in-place reduction over all ranks and returns without waiting for it (the result,
  /// divided by the world size for kAverage, is in `tensor` once wait() returns). Every rank must
  /// start the same collectives in the same order, and `tensor` (contiguous) must stay alive and
  /// unmodified until wait() returns. Other collectives may be issued while it is in flight; they
  /// count in the same order on every rank. Used to overlap gradient allreduce with backward.
  virtual std::unique_ptr<PendingCollective> allreduce_async(const torch::Tensor& tensor, ReduceOp op) = 0;
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
/// Collectives are numbered from 1 on each rank (at any world size; world size 1 communicates
/// nothing but still counts). With `faults` kOn each passes the fault point collective.before at
/// its number (framework/util/fault_points.h): a rule such as `collective.before:8@rank1=stall`
/// makes rank 1 stop for good before its 8th collective, as a hung GPU would.
std::unique_ptr<Communicator> make_mpi_communicator(const RankInfo& info, double timeout_s,
                                                    CollectiveFaultPoints faults = CollectiveFaultPoints::kOn);

}  // namespace sdtrain

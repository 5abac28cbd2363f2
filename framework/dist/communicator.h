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
  /// Blocks until every rank arrived.
  virtual void barrier() = 0;
  /// Backend name for logs ("mpi", "nccl").
  virtual std::string backend() const = 0;
};

/// The MPI backend over MPI_COMM_WORLD for CPU tensors. Every collective is non-blocking MPI
/// polled against `timeout_s`: one that does not complete in time aborts the job with a message
/// naming the collective and the rank (a peer died or hung), instead of waiting forever.
std::unique_ptr<Communicator> make_mpi_communicator(const RankInfo& info, double timeout_s);

}  // namespace sdtrain

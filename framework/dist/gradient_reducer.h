#pragma once
/// Gradient averaging over ranks that overlaps with backward, as data-parallel engines do it
/// (PyTorch DDP's Reducer): the flat gradient buffer is cut into buckets along parameter
/// boundaries, and each bucket's allreduce starts as soon as the last of its parameters has
/// received its gradient (an autograd post-hook on every parameter's gradient accumulator),
/// while backward goes on computing the earlier layers' gradients.
///
/// Buckets are filled from the last parameter backwards (backward produces gradients roughly in
/// reverse order of the forward, so the first bucket is ready first) and launched strictly in
/// bucket order, so every rank issues the same collectives in the same order whatever the order
/// its hooks fire in. A bucket whose parameters got no gradient in this backward (unused in the
/// forward) is launched by finish(). Each bucket is averaged by the collective itself
/// (ReduceOp::kAverage); the result equals allreduce_gradients of the whole buffer element for
/// element.
///
/// Gradient accumulation: only the backward of the last micro-batch of a step syncs
/// (`prepare_backward(true)`); earlier micro-batches just accumulate locally (DDP's no_sync), so
/// a step costs one allreduce of the buffer however many micro-batches it has.
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include <torch/csrc/autograd/function.h>
#include <torch/torch.h>

#include "framework/dist/communicator.h"

namespace sdtrain {

/// The gradient bucket size in bytes for `configured_mb` (distributed.bucket_size_mb) on
/// `communicator`: 0 means the backend's default, 128 MB for NCCL and 25 MB for MPI.
int64_t gradient_bucket_bytes(int configured_mb, const Communicator& communicator);

class GradientReducer {
 public:
  /// `parameters[i]` is a leaf tensor whose gradient lives at element `offsets[i]` of the 1-D
  /// `flat_grads` (FlatParameters lays them out like that; autograd accumulates in place there).
  /// Buckets hold about `bucket_bytes` (at least one parameter each). Registers the hooks; the
  /// reducer must outlive every backward through these parameters, and the communicator the
  /// reducer. With world size 1 it registers nothing and every call is a no-op.
  GradientReducer(const std::vector<torch::Tensor>& parameters, const std::vector<int64_t>& offsets,
                  torch::Tensor flat_grads, Communicator& communicator, int64_t bucket_bytes);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  /// Called before each micro-batch's backward: `sync` true for the last micro-batch of an
  /// optimizer step (its backward launches the allreduces), false for the others (no
  /// communication; gradients accumulate locally).
  void prepare_backward(bool sync);

  /// After the syncing backward: launches the buckets not launched yet (in order) and waits for
  /// all, so the buffer holds the mean over ranks. Also valid
  /// without any syncing backward (then it reduces everything here, without overlap).
  void finish();

  /// Number of buckets (bucket 0 holds the last parameters).
  std::size_t bucket_count() const { return buckets_.size(); }

  /// How many buckets the last finish() found already launched by the hooks during backward
  /// (the overlapped ones); the rest were launched by finish() itself.
  std::size_t launched_during_backward() const { return launched_during_backward_; }

 private:
  struct Bucket {
    int64_t begin = 0;
    int64_t end = 0;
    int parameters = 0;  ///< how many parameters' gradients it holds
    int pending = 0;     ///< of those, still without a gradient in the syncing backward
    std::unique_ptr<PendingCollective> collective;
    torch::Tensor host_copy;  ///< for an MPI backend with device gradients: the staged bucket
  };
  class Hook;

  /// Hook of parameter `index`: its gradient for this backward is complete.
  void on_gradient_ready(std::size_t index);
  /// Starts the allreduces of the buckets that are ready, in bucket order.
  void launch_ready_buckets();
  void launch(Bucket& bucket);
  /// Lets in-flight collectives progress (MPI needs calls into the library to progress).
  void poll();

  std::shared_ptr<GradientReducer*> self_ = std::make_shared<GradientReducer*>(this);  ///< what hooks call
  Communicator& communicator_;
  torch::Tensor flat_grads_;
  std::vector<Bucket> buckets_;
  std::vector<std::size_t> bucket_of_;       ///< by parameter index
  std::vector<bool> ready_;                  ///< by parameter index, in the syncing backward
  /// How autograd owns a graph node: std::shared_ptr in torch 2.11 (the GPU machines' torch),
  /// c10::intrusive_ptr in 2.13 and later; taken from the accessor so both compile.
  using NodePointer = decltype(torch::autograd::impl::grad_accumulator(std::declval<const torch::Tensor&>()));
  std::vector<NodePointer> accumulators_;  ///< kept alive: they carry the hooks
  std::size_t next_to_launch_ = 0;
  std::size_t launched_during_backward_ = 0;
  bool sync_this_backward_ = false;
  bool finished_ = true;
};

}  // namespace sdtrain

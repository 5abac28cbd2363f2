#include "framework/dist/gradient_sync.h"

#include <algorithm>

namespace sdtrain {
namespace {

/// Runs `collective` on `tensor`, staging through host memory when the backend (MPI) cannot
/// take device tensors.
template <class Collective>
void stage_through_host_for_mpi(torch::Tensor& tensor, Communicator& communicator, Collective collective) {
  if (tensor.device().is_cpu() || communicator.backend() != "mpi") {
    collective(tensor);
    return;
  }
  torch::Tensor host = tensor.to(torch::kCPU);
  collective(host);
  tensor.copy_(host);
}

}  // namespace

void broadcast_parameters(torch::Tensor& values, Communicator& communicator) {
  if (communicator.world_size() == 1) return;
  torch::NoGradGuard no_grad;
  stage_through_host_for_mpi(values, communicator, [&](torch::Tensor& t) { communicator.broadcast(t, 0); });
}

void allreduce_gradients(torch::Tensor& grads, Communicator& communicator, int64_t bucket_bytes) {
  if (communicator.world_size() == 1) return;
  torch::NoGradGuard no_grad;
  const int64_t bucket = std::max<int64_t>(1, bucket_bytes / static_cast<int64_t>(grads.element_size()));
  for (int64_t start = 0; start < grads.numel(); start += bucket) {
    torch::Tensor slice = grads.narrow(0, start, std::min(bucket, grads.numel() - start));
    stage_through_host_for_mpi(slice, communicator,
                               [&](torch::Tensor& t) { communicator.allreduce_async(t, ReduceOp::kAverage)->wait(); });
  }
}

}  // namespace sdtrain

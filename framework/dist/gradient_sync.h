#pragma once
/// Data-parallel synchronisation over a Communicator.
#include <cstdint>

#include <torch/types.h>

#include "framework/dist/communicator.h"

namespace sdtrain {

/// Makes every rank's `values` equal to rank 0's (in place).
void broadcast_parameters(torch::Tensor& values, Communicator& communicator);

/// Averages the flat gradient buffer over ranks in place: an allreduce with ReduceOp::kAverage
/// per bucket of about `bucket_bytes`, one after the other.
void allreduce_gradients(torch::Tensor& grads, Communicator& communicator, int64_t bucket_bytes);

}  // namespace sdtrain

#pragma once
/// The check that every rank holds the same parameters (after the start broadcast and after a
/// resume). Ranks that silently trained different weights would average gradients of different
/// models: the result would be wrong without any error, so the job refuses to go on.
#include <cstdint>
#include <string>

#include <torch/types.h>

#include "framework/dist/communicator.h"

namespace sdtrain {

/// A 64-bit hash of the tensor's bytes (FNV-1a over 64-bit words, then the tail bytes) mixed with
/// its dtype and element count. Exact: any changed bit changes it (with probability 1 - 2^-64).
/// Device tensors are copied to host memory in chunks of `chunk_bytes` to hash them.
uint64_t tensor_bytes_hash(const torch::Tensor& tensor, int64_t chunk_bytes = int64_t{64} << 20);

/// Collective: every rank hashes its `values` and the hashes are gathered (an allreduce of a CPU
/// int64 vector with one slot per rank). If any rank's hash differs from rank 0's, every rank
/// throws the same std::runtime_error naming `when` and each rank whose parameters differ.
void verify_same_parameters(const torch::Tensor& values, Communicator& communicator, const std::string& when);

}  // namespace sdtrain

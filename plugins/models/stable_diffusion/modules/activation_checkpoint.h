#pragma once
/// Activation (gradient) checkpointing for LibTorch, the equivalent of Python's
/// torch.utils.checkpoint (non-reentrant semantics for gradients): the wrapped function runs
/// without keeping its activations; backward re-runs it with grad enabled and differentiates
/// the recomputation. Parameters of `module` are inputs of the checkpoint node, so their
/// gradients flow through the normal autograd graph (AccumulateGrad hooks fire as usual).
/// No RNG state is restored: the function must be deterministic (SD v1 blocks have no dropout).
/// The autocast state (CUDA and CPU) at forward time is restored for the recomputation.
#include <functional>
#include <vector>

#include <torch/torch.h>

namespace sdtrain {

/// A block's forward over a list of tensor inputs (undefined tensors allowed) to one output.
using CheckpointFn = std::function<torch::Tensor(const std::vector<torch::Tensor>&)>;

/// Runs `fn(inputs)` checkpointed. The result equals fn(inputs) and so do all gradients.
/// `module` supplies the parameters `fn` uses (only those requiring grad are tracked).
/// When grad mode is off, or neither an input nor a parameter requires grad, this is fn(inputs).
torch::Tensor checkpoint(const CheckpointFn& fn, const std::vector<torch::Tensor>& inputs,
                         const torch::nn::Module& module);

/// True when a module with checkpointing enabled should checkpoint now: training mode and
/// grad mode on.
bool should_checkpoint(bool enabled, const torch::nn::Module& module);

}  // namespace sdtrain

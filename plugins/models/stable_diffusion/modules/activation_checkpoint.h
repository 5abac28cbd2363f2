#pragma once
/// Activation (gradient) checkpointing for LibTorch, the equivalent of Python's
/// torch.utils.checkpoint (non-reentrant semantics for gradients): the wrapped function runs
/// without keeping its activations; backward re-runs it with grad enabled and differentiates
/// the recomputation. Parameters of `module` are inputs of the checkpoint node, so their
/// gradients flow through the normal autograd graph (AccumulateGrad hooks fire as usual).
/// The CPU generator and the inputs' device generator are set to their forward-time states for
/// the recompute (as torch.utils.checkpoint's preserve_rng_state), so random ops inside (an
/// adapter's dropout) draw the same values; their current states are put back afterwards.
/// Adapters attached to the module's layers (adaptable_layers.h) are tracked like its parameters.
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

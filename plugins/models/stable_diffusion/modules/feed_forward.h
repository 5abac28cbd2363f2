#pragma once
/// diffusers FeedForward with activation "geglu": net.0 = GEGLU (proj: dim -> 2*inner,
/// hidden * gelu(gate)), net.1 = dropout, net.2 = Linear(inner -> dim).
#include <torch/torch.h>

#include "plugins/models/stable_diffusion/modules/adaptable_layers.h"

namespace sdtrain {

/// diffusers GEGLU: key proj.*; out = a * gelu(b) with [a, b] = proj(x).chunk(2, -1).
class GEGLUImpl : public torch::nn::Module {
 public:
  GEGLUImpl(int64_t dim_in, int64_t dim_out);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  AdaptableLinear proj_{nullptr};
};
TORCH_MODULE(GEGLU);

class FeedForwardImpl : public torch::nn::Module {
 public:
  /// inner = dim * mult (SD v1: mult 4).
  FeedForwardImpl(int64_t dim, int64_t mult = 4);
  /// [..., dim] -> [..., dim].
  torch::Tensor forward(const torch::Tensor& x);

 private:
  GEGLU geglu_{nullptr};
  AdaptableLinear out_{nullptr};
  torch::nn::ModuleList net_{nullptr};
};
TORCH_MODULE(FeedForward);

}  // namespace sdtrain

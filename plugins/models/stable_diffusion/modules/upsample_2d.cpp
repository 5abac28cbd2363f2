#include "plugins/models/stable_diffusion/modules/upsample_2d.h"

namespace sdtrain {

Upsample2DImpl::Upsample2DImpl(int64_t channels, int64_t out_channels) {
  conv_ = register_module(
      "conv", AdaptableConv2d(torch::nn::Conv2dOptions(channels, out_channels, 3).padding(1)));
}

torch::Tensor Upsample2DImpl::forward(const torch::Tensor& x, const std::vector<int64_t>& size) {
  namespace F = torch::nn::functional;
  const auto dtype = x.scalar_type();
  auto h = dtype == torch::kBFloat16 ? x.to(torch::kFloat32) : x;
  auto opts = F::InterpolateFuncOptions().mode(torch::kNearest);
  if (size.empty()) {
    opts.scale_factor(std::vector<double>{2.0, 2.0});
  } else {
    opts.size(size);
  }
  h = F::interpolate(h, opts);
  if (dtype == torch::kBFloat16) h = h.to(dtype);
  return conv_(h);
}

}  // namespace sdtrain

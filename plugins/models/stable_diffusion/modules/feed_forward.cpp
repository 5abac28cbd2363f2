#include "plugins/models/stable_diffusion/modules/feed_forward.h"

namespace sdtrain {

GEGLUImpl::GEGLUImpl(int64_t dim_in, int64_t dim_out) {
  proj_ = register_module("proj", AdaptableLinear(dim_in, dim_out * 2));
}

torch::Tensor GEGLUImpl::forward(const torch::Tensor& x) {
  auto parts = proj_(x).chunk(2, -1);
  return parts[0] * torch::gelu(parts[1]);
}

FeedForwardImpl::FeedForwardImpl(int64_t dim, int64_t mult) {
  geglu_ = GEGLU(dim, dim * mult);
  out_ = AdaptableLinear(dim * mult, dim);
  net_ = register_module("net", torch::nn::ModuleList(geglu_, torch::nn::Dropout(0.0), out_));
}

torch::Tensor FeedForwardImpl::forward(const torch::Tensor& x) { return out_(geglu_(x)); }

}  // namespace sdtrain

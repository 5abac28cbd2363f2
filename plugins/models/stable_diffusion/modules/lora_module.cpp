#include "plugins/models/stable_diffusion/modules/lora_module.h"

#include "sdtrain/errors.h"

namespace sdtrain {
namespace nn = torch::nn;

void LoraModuleImpl::check_options() const {
  if (options_.rank <= 0) throw ConfigError("adapter.lora.rank: must be > 0, got " + std::to_string(options_.rank));
  const auto check_probability = [](double p, const char* field) {
    if (!(p >= 0.0 && p < 1.0)) throw ConfigError(std::string("adapter.lora.") + field + ": must be in [0, 1)");
  };
  check_probability(options_.dropout, "dropout");
  check_probability(options_.rank_dropout, "rank_dropout");
  check_probability(options_.module_dropout, "module_dropout");
}

LoraModuleImpl::LoraModuleImpl(const nn::LinearOptions& base, const LoraModuleOptions& options) : options_(options) {
  check_options();
  down_linear_ = register_module("lora_down", nn::Linear(nn::LinearOptions(base.in_features(), options.rank).bias(false)));
  up_linear_ = register_module("lora_up", nn::Linear(nn::LinearOptions(options.rank, base.out_features()).bias(false)));
  const double alpha = options.alpha == 0.0 ? static_cast<double>(options.rank) : options.alpha;
  scale_ = alpha / static_cast<double>(options.rank);
  register_buffer("alpha", torch::tensor(static_cast<float>(alpha)));
  torch::NoGradGuard no_grad;
  up_linear_->weight.zero_();
}

LoraModuleImpl::LoraModuleImpl(const nn::detail::ConvNdOptions<2>& base, const LoraModuleOptions& options) : options_(options) {
  check_options();
  TORCH_CHECK(base.groups() == 1, "LoRA on a grouped convolution is not supported");
  down_conv_ = register_module("lora_down", nn::Conv2d(nn::Conv2dOptions(base.in_channels(), options.rank, base.kernel_size())
                                                           .stride(base.stride())
                                                           .padding(base.padding())
                                                           .dilation(base.dilation())
                                                           .bias(false)));
  up_conv_ = register_module("lora_up", nn::Conv2d(nn::Conv2dOptions(options.rank, base.out_channels(), 1).bias(false)));
  const double alpha = options.alpha == 0.0 ? static_cast<double>(options.rank) : options.alpha;
  scale_ = alpha / static_cast<double>(options.rank);
  register_buffer("alpha", torch::tensor(static_cast<float>(alpha)));
  torch::NoGradGuard no_grad;
  up_conv_->weight.zero_();
}

torch::Tensor LoraModuleImpl::delta(const torch::Tensor& input) {
  const bool training = is_training();
  // kohya draws the module-dropout decision on the CPU, so no device value is read.
  if (training && options_.module_dropout > 0 && torch::rand({1}).item<double>() < options_.module_dropout) return {};
  const torch::Tensor& down_weight = down_conv_ ? down_conv_->weight : down_linear_->weight;
  const torch::Tensor x = input.to(down_weight.scalar_type());
  torch::Tensor lx = down_conv_ ? down_conv_(x) : down_linear_(x);
  if (training && options_.dropout > 0) lx = torch::dropout(lx, options_.dropout, /*train=*/true);
  double scale = scale_;
  if (training && options_.rank_dropout > 0) {
    // One keep/drop decision per (sample, rank), broadcast over positions.
    torch::Tensor keep = torch::rand({lx.size(0), options_.rank}, lx.options()) > options_.rank_dropout;
    if (lx.dim() == 3) keep = keep.unsqueeze(1);
    if (lx.dim() == 4) keep = keep.unsqueeze(-1).unsqueeze(-1);
    lx = lx * keep.to(lx.scalar_type());
    scale /= 1.0 - options_.rank_dropout;
  }
  const torch::Tensor out = up_conv_ ? up_conv_(lx) : up_linear_(lx);
  return out * (multiplier_ * scale);
}

}  // namespace sdtrain

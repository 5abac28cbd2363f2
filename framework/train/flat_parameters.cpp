#include "framework/train/flat_parameters.h"

namespace sdtrain {

FlatParameters::FlatParameters(torch::nn::Module& module) {
  std::vector<torch::Tensor>& parameters = parameters_;
  int64_t total = 0;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    if (!item.value().requires_grad()) continue;
    names_.push_back(item.key());
    offsets_.push_back(total);
    shapes_.push_back(item.value().sizes().vec());
    total += item.value().numel();
    parameters.push_back(item.value());
  }
  TORCH_CHECK(!parameters.empty(), "FlatParameters: the module has no trainable parameters");
  const auto options = parameters.front().options();
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    TORCH_CHECK(parameters[i].dtype() == options.dtype() && parameters[i].device() == options.device(),
                "FlatParameters: parameter ", names_[i], " has dtype/device ", parameters[i].dtype(), "/",
                parameters[i].device(), ", expected ", options.dtype(), "/", options.device());
  }
  values_ = torch::empty({total}, options);
  grads_ = torch::zeros({total}, options);
  torch::NoGradGuard no_grad;
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    torch::Tensor slot = view(values_, i);
    slot.copy_(parameters[i]);
    parameters[i].set_data(slot);
    parameters[i].mutable_grad() = view(grads_, i);
  }
}

torch::Tensor FlatParameters::view(const torch::Tensor& flat, std::size_t index) const {
  int64_t numel = 1;
  for (int64_t size : shapes_[index]) numel *= size;
  return flat.narrow(0, offsets_[index], numel).view(shapes_[index]);
}

}  // namespace sdtrain

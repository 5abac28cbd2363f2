#include "framework/train/flat_parameters.h"

#include <c10/util/strides.h>

#include "framework/util/strings.h"
#include "sdtrain/errors.h"

namespace sdtrain {

FlatParameters::FlatParameters(torch::nn::Module& module, const std::vector<ParameterGroup>& groups) {
  std::vector<torch::Tensor>& parameters = parameters_;
  std::vector<std::pair<std::string, torch::Tensor>> untaken;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    if (item.value().requires_grad()) untaken.emplace_back(item.key(), item.value());
  }
  TORCH_CHECK(!untaken.empty(), "FlatParameters: the module has no trainable parameters");
  int64_t total = 0;
  for (const ParameterGroup& group : groups) {
    FlatGroup range{group, total, total};
    std::vector<std::pair<std::string, torch::Tensor>> rest;
    for (auto& [name, parameter] : untaken) {
      if (!starts_with(name, group.prefix)) {
        rest.emplace_back(std::move(name), std::move(parameter));
        continue;
      }
      names_.push_back(name);
      offsets_.push_back(total);
      shapes_.push_back(parameter.sizes().vec());
      // A dense parameter keeps its strides (channels-last weights stay channels-last); any
      // other is stored row-major.
      const bool dense = parameter.is_non_overlapping_and_dense();
      const c10::DimVector row_major = c10::contiguous_strides(parameter.sizes());
      strides_.push_back(dense ? parameter.strides().vec() : std::vector<int64_t>(row_major.begin(), row_major.end()));
      reordered_ = reordered_ || (dense && !parameter.is_contiguous());
      total += parameter.numel();
      parameters.push_back(parameter);
    }
    range.end = total;
    if (range.begin == range.end) {
      throw ConfigError("parameter group '" + group.name + "' (prefix '" + group.prefix +
                        "') holds no trained parameter that an earlier group did not take");
    }
    groups_.push_back(std::move(range));
    untaken = std::move(rest);
  }
  if (!untaken.empty()) {
    std::vector<std::string> names;
    for (const FlatGroup& group : groups_) names.push_back(group.spec.name);
    throw ConfigError("trained parameter '" + untaken.front().first + "' is in no parameter group (groups: " +
                      join(names) + ")");
  }
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
  return flat.narrow(0, offsets_[index], numel).as_strided(shapes_[index], strides_[index]);
}

std::string FlatParameters::layout() const { return reordered_ ? "channels-last" : "standard"; }

}  // namespace sdtrain

#include "plugins/models/stable_diffusion/modules/state_dict_loader.h"

#include <sstream>
#include <vector>

#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

std::string shape_string(const torch::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

/// Copies `state` into `own` (tensors of a module by name); FormatError as load_state_dict_strict.
void copy_strict(const TensorMap& own, const TensorMap& state, const std::string& source) {
  std::vector<std::string> missing, unexpected, mismatched;
  for (const auto& [name, tensor] : own) {
    auto it = state.find(name);
    if (it == state.end()) {
      missing.push_back(name);
    } else if (it->second.sizes() != tensor.sizes()) {
      mismatched.push_back(name + " (expected " + shape_string(tensor) + ", got " +
                           shape_string(it->second) + ")");
    }
  }
  for (const auto& [name, tensor] : state) {
    if (own.find(name) == own.end()) unexpected.push_back(name);
  }
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::ostringstream os;
    os << source << ": state dict does not match the module (" << missing.size()
       << " missing, " << unexpected.size() << " unexpected, " << mismatched.size()
       << " shape mismatches)";
    auto list = [&os](const char* what, const std::vector<std::string>& names) {
      const size_t shown = std::min<size_t>(names.size(), 20);
      for (size_t i = 0; i < shown; ++i) os << "\n  " << what << ": " << names[i];
      if (names.size() > shown) os << "\n  ... and " << names.size() - shown << " more " << what;
    };
    list("missing", missing);
    list("unexpected", unexpected);
    list("mismatched", mismatched);
    throw FormatError(os.str());
  }
  torch::NoGradGuard no_grad;
  for (const auto& [name, tensor] : own) {
    torch::Tensor destination = tensor;
    destination.copy_(state.at(name));
  }
}

}  // namespace

TensorMap module_state_dict(const torch::nn::Module& module) {
  TensorMap out;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    out[item.key()] = item.value();
  }
  for (const auto& item : module.named_buffers(/*recurse=*/true)) {
    out[item.key()] = item.value();
  }
  return out;
}

void load_state_dict_strict(torch::nn::Module& module, const TensorMap& state,
                            const std::string& source) {
  copy_strict(module_state_dict(module), state, source);
}

void load_parameters_strict(torch::nn::Module& module, const TensorMap& state, const std::string& source) {
  TensorMap own;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) own[item.key()] = item.value();
  copy_strict(own, state, source);
}

}  // namespace sdtrain

#include "plugins/models/stable_diffusion/modules/activation_checkpoint.h"

#include <ATen/autocast_mode.h>

namespace sdtrain {
namespace {

/// Holds the function across forward/backward inside the autograd context (IValue capsule).
struct CheckpointState : torch::CustomClassHolder {
  CheckpointFn fn;
  size_t num_inputs = 0;
  std::vector<bool> input_defined;
  bool autocast_cuda = false;
  at::ScalarType autocast_cuda_dtype = at::kHalf;
  bool autocast_cpu = false;
  at::ScalarType autocast_cpu_dtype = at::kBFloat16;
};

/// Sets the autocast state for a scope and restores the previous one.
class AutocastScope {
 public:
  explicit AutocastScope(const CheckpointState& s)
      : cuda_(at::autocast::is_autocast_enabled(at::kCUDA)),
        cuda_dtype_(at::autocast::get_autocast_dtype(at::kCUDA)),
        cpu_(at::autocast::is_autocast_enabled(at::kCPU)),
        cpu_dtype_(at::autocast::get_autocast_dtype(at::kCPU)) {
    at::autocast::set_autocast_enabled(at::kCUDA, s.autocast_cuda);
    at::autocast::set_autocast_dtype(at::kCUDA, s.autocast_cuda_dtype);
    at::autocast::set_autocast_enabled(at::kCPU, s.autocast_cpu);
    at::autocast::set_autocast_dtype(at::kCPU, s.autocast_cpu_dtype);
  }
  ~AutocastScope() {
    at::autocast::set_autocast_enabled(at::kCUDA, cuda_);
    at::autocast::set_autocast_dtype(at::kCUDA, cuda_dtype_);
    at::autocast::set_autocast_enabled(at::kCPU, cpu_);
    at::autocast::set_autocast_dtype(at::kCPU, cpu_dtype_);
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool cuda_;
  at::ScalarType cuda_dtype_;
  bool cpu_;
  at::ScalarType cpu_dtype_;
};

class CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
 public:
  // `tensors` = inputs followed by parameters.
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx,
                               c10::intrusive_ptr<CheckpointState> state,
                               torch::autograd::variable_list tensors) {
    std::vector<torch::Tensor> inputs(tensors.begin(), tensors.begin() + state->num_inputs);
    torch::Tensor out;
    {
      torch::NoGradGuard no_grad;
      out = state->fn(inputs);
    }
    // Undefined inputs cannot be saved; remember which were defined.
    std::vector<torch::Tensor> to_save;
    for (size_t i = 0; i < state->num_inputs; ++i) {
      state->input_defined.push_back(tensors[i].defined());
      if (tensors[i].defined()) to_save.push_back(tensors[i]);
    }
    for (size_t i = state->num_inputs; i < tensors.size(); ++i) to_save.push_back(tensors[i]);
    ctx->save_for_backward(to_save);
    ctx->saved_data["state"] = torch::IValue::make_capsule(state);
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    auto state = c10::static_intrusive_pointer_cast<CheckpointState>(
        ctx->saved_data["state"].toCapsule());
    auto saved = ctx->get_saved_variables();
    std::vector<torch::Tensor> inputs;
    std::vector<torch::Tensor> params;
    size_t k = 0;
    for (size_t i = 0; i < state->num_inputs; ++i) {
      if (state->input_defined[i]) {
        torch::Tensor t = saved[k++].detach();
        if (at::isFloatingType(t.scalar_type())) t.requires_grad_(true);
        inputs.push_back(t);
      } else {
        inputs.emplace_back();
      }
    }
    for (; k < saved.size(); ++k) params.push_back(saved[k]);

    torch::Tensor out;
    {
      torch::AutoGradMode grad_on(true);
      AutocastScope autocast(*state);
      // The parameters are the same leaf tensors the forward used, so differentiating the
      // recomputation w.r.t. them gives their gradient contribution.
      out = state->fn(inputs);
    }
    std::vector<torch::Tensor> wrt;
    std::vector<size_t> wrt_index;  // index into the returned gradient list
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (inputs[i].defined() && inputs[i].requires_grad()) {
        wrt.push_back(inputs[i]);
        wrt_index.push_back(i);
      }
    }
    for (size_t i = 0; i < params.size(); ++i) {
      wrt.push_back(params[i]);
      wrt_index.push_back(state->num_inputs + i);
    }
    torch::autograd::variable_list grads(state->num_inputs + params.size());
    if (!wrt.empty() && out.requires_grad()) {
      auto g = torch::autograd::grad({out}, wrt, {grad_outputs[0]}, /*retain_graph=*/false,
                                     /*create_graph=*/false, /*allow_unused=*/true);
      for (size_t i = 0; i < g.size(); ++i) grads[wrt_index[i]] = g[i];
    }
    grads.insert(grads.begin(), torch::Tensor());  // no gradient for the state argument
    return grads;
  }
};

}  // namespace

bool should_checkpoint(bool enabled, const torch::nn::Module& module) {
  return enabled && module.is_training() && torch::GradMode::is_enabled();
}

torch::Tensor checkpoint(const CheckpointFn& fn, const std::vector<torch::Tensor>& inputs,
                         const torch::nn::Module& module) {
  std::vector<torch::Tensor> params;
  for (const auto& p : module.parameters(/*recurse=*/true)) {
    if (p.requires_grad()) params.push_back(p);
  }
  bool any_grad = !params.empty();
  for (const auto& t : inputs) any_grad = any_grad || (t.defined() && t.requires_grad());
  if (!torch::GradMode::is_enabled() || !any_grad) return fn(inputs);

  auto state = c10::make_intrusive<CheckpointState>();
  state->fn = fn;
  state->num_inputs = inputs.size();
  state->autocast_cuda = at::autocast::is_autocast_enabled(at::kCUDA);
  state->autocast_cuda_dtype = at::autocast::get_autocast_dtype(at::kCUDA);
  state->autocast_cpu = at::autocast::is_autocast_enabled(at::kCPU);
  state->autocast_cpu_dtype = at::autocast::get_autocast_dtype(at::kCPU);
  torch::autograd::variable_list tensors(inputs.begin(), inputs.end());
  tensors.insert(tensors.end(), params.begin(), params.end());
  return CheckpointFunction::apply(state, tensors);
}

}  // namespace sdtrain

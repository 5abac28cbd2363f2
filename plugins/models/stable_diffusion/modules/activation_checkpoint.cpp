#include "plugins/models/stable_diffusion/modules/activation_checkpoint.h"

#include <mutex>
#include <utility>

#include <ATen/autocast_mode.h>

#include "plugins/models/stable_diffusion/modules/adaptable_layers.h"

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
  /// The random generators' states at forward time (the CPU's, and the inputs' device's when it is
  /// not the CPU), restored for the recompute so that random ops in the function (an adapter's
  /// dropout) draw what the forward drew, as torch.utils.checkpoint's preserve_rng_state.
  std::vector<std::pair<at::Generator, torch::Tensor>> rng_states;
};

/// The default generators that random ops on `device` may draw from: the CPU's, and the device's.
std::vector<at::Generator> generators_for(const torch::Device& device) {
  std::vector<at::Generator> generators{at::detail::getDefaultCPUGenerator()};
  if (!device.is_cpu()) generators.push_back(at::globalContext().defaultGenerator(device));
  return generators;
}

torch::Tensor generator_state(at::Generator& generator) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  return generator.get_state();
}

void set_generator_state(at::Generator& generator, const torch::Tensor& state) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

/// Sets the generators to the forward's states for the recompute and puts the current ones back
/// afterwards, so that the recompute neither sees other draws nor disturbs later ones.
class RngStateScope {
 public:
  explicit RngStateScope(const CheckpointState& s) {
    for (const auto& [generator, state] : s.rng_states) {
      at::Generator g = generator;
      current_.emplace_back(g, generator_state(g));
      set_generator_state(g, state);
    }
  }
  ~RngStateScope() {
    for (auto& [generator, state] : current_) set_generator_state(generator, state);
  }
  RngStateScope(const RngStateScope&) = delete;
  RngStateScope& operator=(const RngStateScope&) = delete;

 private:
  std::vector<std::pair<at::Generator, torch::Tensor>> current_;
};

/// Sets the forward's autocast state for the recompute and restores the previous one, with
/// autocast's nesting protocol (as torch.utils.checkpoint's `with torch.autocast(...)`): the
/// low-precision copies of weights that the recompute casts are cached only while a scope is
/// open, and the outermost scope's exit drops them. Without it they outlive the optimizer step
/// and the next recompute (or, on the CPU, the next forward) computes with the previous step's
/// weights; on CUDA, where backward runs on the autograd engine's device thread, they would never
/// be dropped at all.
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
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
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
  // `tensors` = the DEFINED inputs (state->input_defined says where they go) then parameters.
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx,
                               c10::intrusive_ptr<CheckpointState> state,
                               at::TensorList tensors) {
    std::vector<torch::Tensor> inputs;
    size_t k = 0;
    for (bool defined : state->input_defined) {
      inputs.push_back(defined ? tensors[k++] : torch::Tensor());
    }
    torch::Tensor out;
    {
      torch::NoGradGuard no_grad;
      out = state->fn(inputs);
    }
    ctx->save_for_backward(tensors.vec());
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
      RngStateScope rng(*state);
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
    torch::autograd::variable_list grads(state->num_inputs + params.size());  // by full input index
    if (!wrt.empty() && out.requires_grad()) {
      auto g = torch::autograd::grad({out}, wrt, {grad_outputs[0]}, /*retain_graph=*/false,
                                     /*create_graph=*/false, /*allow_unused=*/true);
      for (size_t i = 0; i < g.size(); ++i) grads[wrt_index[i]] = g[i];
    }
    // Back to the node's inputs: the state argument, the defined inputs, the parameters.
    torch::autograd::variable_list result{torch::Tensor()};
    for (size_t i = 0; i < state->num_inputs; ++i) {
      if (state->input_defined[i]) result.push_back(grads[i]);
    }
    result.insert(result.end(), grads.begin() + static_cast<std::ptrdiff_t>(state->num_inputs), grads.end());
    return result;
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
  // Adapters attached to the module's layers are not its parameters but are used by fn.
  for (const auto& p : attached_adapter_parameters(module)) {
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
  torch::Device device = torch::kCPU;
  for (const auto& t : inputs) {
    if (t.defined()) {
      device = t.device();
      break;
    }
  }
  for (at::Generator& generator : generators_for(device)) {
    state->rng_states.emplace_back(generator, generator_state(generator));
  }
  torch::autograd::variable_list tensors;
  for (const auto& t : inputs) {
    state->input_defined.push_back(t.defined());
    if (t.defined()) tensors.push_back(t);
  }
  tensors.insert(tensors.end(), params.begin(), params.end());
  // Passed as a TensorList so autograd sees every tensor as an input (a std::vector argument
  // would be taken as an opaque non-tensor value and the output would not require grad).
  return CheckpointFunction::apply(state, at::TensorList(tensors));
}

}  // namespace sdtrain

#include "framework/dist/gradient_reducer.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

namespace sdtrain {

/// Post-hook of one parameter's gradient accumulator: runs after autograd has added this
/// backward's gradient into the parameter's .grad (a view of the flat buffer).
class GradientReducer::Hook : public torch::autograd::FunctionPostHook {
 public:
  Hook(std::shared_ptr<GradientReducer*> reducer, std::size_t index) : reducer_(std::move(reducer)), index_(index) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    if (*reducer_ != nullptr) (*reducer_)->on_gradient_ready(index_);
    return outputs;
  }

 private:
  std::shared_ptr<GradientReducer*> reducer_;  ///< null once the reducer is gone
  std::size_t index_;
};

int64_t gradient_bucket_bytes(int configured_mb, const Communicator& communicator) {
  constexpr int kNcclDefaultMb = 128;
  constexpr int kMpiDefaultMb = 25;
  const int mb = configured_mb > 0 ? configured_mb : communicator.backend() == "nccl" ? kNcclDefaultMb : kMpiDefaultMb;
  return static_cast<int64_t>(mb) * 1024 * 1024;
}

GradientReducer::GradientReducer(const std::vector<torch::Tensor>& parameters, const std::vector<int64_t>& offsets,
                                 torch::Tensor flat_grads, Communicator& communicator, int64_t bucket_bytes)
    : communicator_(communicator), flat_grads_(std::move(flat_grads)) {
  TORCH_CHECK(parameters.size() == offsets.size(), "GradientReducer: one offset per parameter");
  TORCH_CHECK(flat_grads_.dim() == 1 && flat_grads_.is_contiguous(), "GradientReducer: needs a contiguous 1-D buffer");
  if (communicator_.world_size() == 1 || parameters.empty()) return;

  // Buckets from the last parameter backwards, each closed once it holds bucket_bytes.
  const int64_t bucket_elements = std::max<int64_t>(1, bucket_bytes / static_cast<int64_t>(flat_grads_.element_size()));
  bucket_of_.resize(parameters.size());
  int64_t end = flat_grads_.numel();
  for (std::size_t i = parameters.size(); i-- > 0;) {
    if (buckets_.empty() || buckets_.back().end - buckets_.back().begin >= bucket_elements) {
      Bucket bucket;
      bucket.begin = bucket.end = end;
      buckets_.push_back(std::move(bucket));
    }
    Bucket& bucket = buckets_.back();
    TORCH_CHECK(offsets[i] <= bucket.begin, "GradientReducer: offsets must increase with the parameter index");
    bucket.begin = offsets[i];
    ++bucket.parameters;
    bucket_of_[i] = buckets_.size() - 1;
    end = offsets[i];
  }
  buckets_.back().begin = 0;  // anything before the first parameter (nothing, for FlatParameters)

  ready_.assign(parameters.size(), false);
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    TORCH_CHECK(parameters[i].requires_grad() && parameters[i].is_leaf(),
                "GradientReducer: parameter ", i, " is not a leaf that requires grad");
    NodePointer accumulator = torch::autograd::impl::grad_accumulator(parameters[i]);
    accumulator->add_post_hook(std::make_unique<Hook>(self_, i));
    accumulators_.push_back(std::move(accumulator));
  }
}

GradientReducer::~GradientReducer() {
  // An accumulator may outlive the reducer (a graph still holds it): its hook must then do
  // nothing. Collectives in flight are awaited so no MPI/NCCL call writes into freed memory.
  *self_ = nullptr;
  for (auto& bucket : buckets_) {
    if (bucket.collective) {
      try {
        bucket.collective->wait();
      } catch (...) {
      }
    }
  }
}

void GradientReducer::prepare_backward(bool sync) {
  if (buckets_.empty()) return;
  TORCH_CHECK(finished_, "GradientReducer: prepare_backward() before finish() of the previous syncing backward");
  sync_this_backward_ = sync;
  if (!sync) return;
  finished_ = false;
  std::fill(ready_.begin(), ready_.end(), false);
  for (auto& bucket : buckets_) bucket.pending = bucket.parameters;
  next_to_launch_ = 0;
}

void GradientReducer::on_gradient_ready(std::size_t index) {
  if (!sync_this_backward_) return;
  if (ready_[index]) {
    // A second accumulation into the same gradient within one backward (a re-entrant backward):
    // harmless while its bucket waits, wrong once the bucket's allreduce has started.
    if (bucket_of_[index] < next_to_launch_) {
      throw std::logic_error("GradientReducer: parameter " + std::to_string(index) +
                             " received a second gradient in one backward after its bucket was sent");
    }
    return;
  }
  ready_[index] = true;
  --buckets_[bucket_of_[index]].pending;
  launch_ready_buckets();
  poll();
}

void GradientReducer::launch_ready_buckets() {
  while (next_to_launch_ < buckets_.size() && buckets_[next_to_launch_].pending == 0) {
    launch(buckets_[next_to_launch_++]);
  }
}

void GradientReducer::launch(Bucket& bucket) {
  torch::NoGradGuard no_grad;
  torch::Tensor slice = flat_grads_.narrow(0, bucket.begin, bucket.end - bucket.begin);
  if (!slice.device().is_cpu() && communicator_.backend() == "mpi") {
    // MPI takes host memory only: stage the bucket (copied back in finish()).
    bucket.host_copy = slice.to(torch::kCPU);
    bucket.collective = communicator_.allreduce_async(bucket.host_copy, ReduceOp::kAverage);
  } else {
    bucket.collective = communicator_.allreduce_async(slice, ReduceOp::kAverage);
  }
}

void GradientReducer::poll() {
  for (std::size_t i = 0; i < next_to_launch_; ++i) {
    if (buckets_[i].collective && buckets_[i].collective->test()) continue;
    break;  // they complete in order; one still running is enough progress for now
  }
}

void GradientReducer::finish() {
  if (buckets_.empty()) return;
  torch::NoGradGuard no_grad;
  if (finished_) {
    // No syncing backward since the last finish(): reduce the whole buffer now.
    prepare_backward(true);
    std::fill(ready_.begin(), ready_.end(), true);
  }
  sync_this_backward_ = false;
  launched_during_backward_ = next_to_launch_;
  while (next_to_launch_ < buckets_.size()) launch(buckets_[next_to_launch_++]);
  for (auto& bucket : buckets_) {
    bucket.collective->wait();
    bucket.collective.reset();
    if (bucket.host_copy.defined()) {
      flat_grads_.narrow(0, bucket.begin, bucket.end - bucket.begin).copy_(bucket.host_copy);
      bucket.host_copy = torch::Tensor();
    }
  }
  finished_ = true;
}

}  // namespace sdtrain

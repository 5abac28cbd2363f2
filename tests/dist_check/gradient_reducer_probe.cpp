// Runs GradientReducer (framework/dist/gradient_reducer.h) under mpirun against the plain path
// (backward, then allreduce_gradients of the whole buffer) and prints "rank R: ok" or the first
// difference. Every rank trains the same small MLP on its own inputs.
//   mpirun -np N gradient_reducer_probe
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "framework/dist/communicator.h"
#include "framework/dist/gradient_reducer.h"
#include "framework/dist/gradient_sync.h"
#include "framework/dist/process_group.h"
#include "framework/train/flat_parameters.h"

namespace {

/// Counts the collectives a real communicator is asked for, to see when the reducer sends.
class CountingCommunicator : public sdtrain::Communicator {
 public:
  explicit CountingCommunicator(sdtrain::Communicator& inner) : inner_(inner) {}
  int rank() const override { return inner_.rank(); }
  int world_size() const override { return inner_.world_size(); }
  void allreduce_sum(torch::Tensor& tensor) override { inner_.allreduce_sum(tensor); }
  std::unique_ptr<sdtrain::PendingCollective> allreduce_async(const torch::Tensor& tensor,
                                                              sdtrain::ReduceOp op) override {
    ++started;
    return inner_.allreduce_async(tensor, op);
  }
  void broadcast(torch::Tensor& tensor, int root) override { inner_.broadcast(tensor, root); }
  void barrier() override { inner_.barrier(); }
  void barrier(double timeout_s, const std::string& purpose) override { inner_.barrier(timeout_s, purpose); }
  std::string backend() const override { return inner_.backend(); }
  int started = 0;

 private:
  sdtrain::Communicator& inner_;
};

/// Four layers; `skip_third` leaves layer 3's parameters out of the graph (an unused branch).
struct Mlp : torch::nn::Module {
  Mlp() {
    for (int i = 0; i < 4; ++i) layers.push_back(register_module("layer" + std::to_string(i), torch::nn::Linear(64, 64)));
  }
  torch::Tensor forward(torch::Tensor x, bool skip_third) {
    for (int i = 0; i < 4; ++i) {
      if (!(skip_third && i == 2)) x = torch::tanh(layers[i]->forward(x));
    }
    return x.pow(2).mean();
  }
  std::vector<torch::nn::Linear> layers;
};

void check(bool condition, const std::string& what) {
  if (!condition) throw std::runtime_error(what);
}

/// Gradients of `micro_batches` backward passes (loss / micro_batches each) averaged over ranks,
/// by the reducer (`overlap`) or by allreduce_gradients afterwards. `sent_early`: collectives
/// the reducer started before finish().
torch::Tensor mean_gradients(sdtrain::Communicator& communicator, int micro_batches, bool skip_third, bool overlap,
                             int64_t bucket_bytes, int* sent_early = nullptr, std::size_t* buckets = nullptr) {
  torch::manual_seed(7);  // same weights on every rank
  Mlp model;
  sdtrain::FlatParameters flat(model);
  CountingCommunicator counting(communicator);
  sdtrain::GradientReducer reducer(flat.tensors(), flat.offsets(), flat.grads(), counting, bucket_bytes);
  for (int m = 0; m < micro_batches; ++m) {
    torch::manual_seed(100 + 10 * communicator.rank() + m);  // each rank, each micro-batch its own data
    const torch::Tensor inputs = torch::randn({8, 64});
    if (overlap) reducer.prepare_backward(m + 1 == micro_batches);
    (model.forward(inputs, skip_third) / micro_batches).backward();
    if (overlap && m + 1 < micro_batches) check(counting.started == 0, "a collective during a no_sync micro-batch");
  }
  if (sent_early != nullptr) *sent_early = counting.started;
  if (buckets != nullptr) *buckets = reducer.bucket_count();
  if (overlap) {
    reducer.finish();
  } else {
    sdtrain::allreduce_gradients(flat.grads(), communicator, bucket_bytes);
  }
  return flat.grads().clone();
}

void run_checks(sdtrain::Communicator& communicator) {
  const int64_t layer_bytes = (64 * 64 + 64) * 4;
  for (const bool skip_third : {false, true}) {
    for (const int micro_batches : {1, 3}) {
      const std::string what = std::string(skip_third ? "unused layer, " : "") + std::to_string(micro_batches) +
                               " micro-batch(es)";
      int sent_early = 0;
      std::size_t buckets = 0;
      const torch::Tensor reduced =
          mean_gradients(communicator, micro_batches, skip_third, true, layer_bytes, &sent_early, &buckets);
      const torch::Tensor plain = mean_gradients(communicator, micro_batches, skip_third, false, layer_bytes);
      check(torch::equal(reduced, plain), what + ": reducer differs from allreduce_gradients by " +
                                              std::to_string((reduced - plain).abs().max().item<double>()));
      check(buckets == 4, what + ": expected a bucket per layer, got " + std::to_string(buckets));
      // Buckets go out during backward as they fill; with layer 3 unused its bucket (index 1)
      // and the ones behind it wait for finish().
      const int expected_early = skip_third ? 1 : 4;
      check(sent_early == expected_early, what + ": " + std::to_string(sent_early) +
                                              " bucket(s) sent during backward, expected " +
                                              std::to_string(expected_early));
    }
  }
  // finish() without an syncing backward reduces everything (no overlap, same result).
  torch::manual_seed(7);
  Mlp model;
  sdtrain::FlatParameters flat(model);
  sdtrain::GradientReducer reducer(flat.tensors(), flat.offsets(), flat.grads(), communicator, layer_bytes);
  torch::manual_seed(100 + 10 * communicator.rank());
  model.forward(torch::randn({8, 64}), false).backward();
  reducer.finish();
  check(torch::equal(flat.grads(), mean_gradients(communicator, 1, false, false, layer_bytes)),
        "finish() without prepare_backward() differs from allreduce_gradients");
}

}  // namespace

int main() {
  sdtrain::ProcessGroup group;
  auto communicator = sdtrain::make_mpi_communicator(group.info(), 60.0);
  int status = 0;
  try {
    run_checks(*communicator);
    std::printf("rank %d: ok\n", group.info().rank);
  } catch (const std::exception& error) {
    std::printf("rank %d: error: %s\n", group.info().rank, error.what());
    status = 1;
  }
  std::fflush(stdout);
  communicator->barrier();
  return status;
}

// Allreduce bandwidth of the bucketed gradient path (framework/dist/gradient_sync: buckets of
// distributed.bucket_size_mb through the polled MPI communicator, then the division by the world
// size) against one plain blocking MPI_Allreduce of the same bytes, on CPU:
//
//   mpirun -np 2 --oversubscribe build/bin/allreduce_bench [MEGABYTES [BUCKET_MB [REPEATS]]]
//
// Prints, on rank 0, the median time and algorithm bandwidth (bytes / time) of each and their
// ratio (bucketed / plain; 1.0 means the buckets cost nothing). Defaults: 100 MB of float32
// gradients (about a tenth of the SD UNet's), 25 MB buckets, 15 repeats after 2 warm-up rounds.
//
// Then the overlap: a training step (forward + backward + gradient averaging) of an MLP with
// that many megabytes of gradients (1024 x 1024 layers), with the allreduce after backward
// (allreduce_gradients) against the allreduce overlapped with backward (GradientReducer, as the
// trainer runs it), and backward alone for the compute time.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <torch/torch.h>

#include "framework/dist/communicator.h"
#include "framework/dist/gradient_reducer.h"
#include "framework/dist/gradient_sync.h"
#include "framework/dist/process_group.h"
#include "framework/train/flat_parameters.h"

namespace {

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

/// Median seconds of `repeats` runs of `body`, all ranks starting together each time.
template <class Body>
double time_it(int repeats, Body body) {
  std::vector<double> seconds;
  for (int i = -2; i < repeats; ++i) {
    MPI_Barrier(MPI_COMM_WORLD);
    const auto start = std::chrono::steady_clock::now();
    body();
    double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    // The slowest rank decides when the collective is done.
    MPI_Allreduce(MPI_IN_PLACE, &elapsed, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (i >= 0) seconds.push_back(elapsed);
  }
  return median(seconds);
}

/// Layers of 1024 x 1024 with tanh, as many as fit `megabytes` of float32 weights.
struct Mlp : torch::nn::Module {
  explicit Mlp(double megabytes) {
    const int layers = std::max(2, static_cast<int>(megabytes / 4.0));
    for (int i = 0; i < layers; ++i) {
      stack.push_back(register_module("layer" + std::to_string(i), torch::nn::Linear(1024, 1024)));
    }
  }
  torch::Tensor forward(torch::Tensor x) {
    for (auto& layer : stack) x = torch::tanh(layer->forward(x));
    return x.pow(2).mean();
  }
  std::vector<torch::nn::Linear> stack;
};

/// Median step times (seconds) of: backward only, backward then allreduce, overlapped.
struct OverlapTimes {
  double compute = 0, sequential = 0, overlapped = 0;
  std::size_t buckets = 0, sent_during_backward = 0;
};

OverlapTimes time_overlap(double megabytes, int64_t bucket_bytes, int repeats, sdtrain::Communicator& communicator) {
  torch::manual_seed(0);
  Mlp model(megabytes);
  sdtrain::FlatParameters flat(model);
  sdtrain::GradientReducer reducer(flat.tensors(), flat.offsets(), flat.grads(), communicator, bucket_bytes);
  const torch::Tensor inputs = torch::randn({32, 1024});
  OverlapTimes times;
  times.compute = time_it(repeats, [&] {
    flat.zero_grad();
    model.forward(inputs).backward();
  });
  times.sequential = time_it(repeats, [&] {
    flat.zero_grad();
    model.forward(inputs).backward();
    sdtrain::allreduce_gradients(flat.grads(), communicator, bucket_bytes);
  });
  times.overlapped = time_it(repeats, [&] {
    flat.zero_grad();
    reducer.prepare_backward(true);
    model.forward(inputs).backward();
    reducer.finish();
  });
  times.buckets = reducer.bucket_count();
  times.sent_during_backward = reducer.launched_during_backward();
  return times;
}

}  // namespace

int main(int argc, char** argv) {
  const double megabytes = argc > 1 ? std::atof(argv[1]) : 100;
  const double bucket_mb = argc > 2 ? std::atof(argv[2]) : 25;
  const int repeats = argc > 3 ? std::atoi(argv[3]) : 15;
  sdtrain::ProcessGroup group;
  const sdtrain::RankInfo& info = group.info();
  if (info.world_size < 2) {
    std::fprintf(stderr, "allreduce_bench: run it under mpirun -np 2 (or more)\n");
    return 2;
  }
  torch::set_num_threads(1);
  const int64_t numel = static_cast<int64_t>(megabytes * 1024 * 1024 / sizeof(float));
  const double bytes = static_cast<double>(numel) * sizeof(float);
  auto communicator = sdtrain::make_mpi_communicator(info, 600);

  torch::Tensor plain = torch::ones({numel}, torch::kFloat32);
  const double plain_s = time_it(repeats, [&] {
    MPI_Allreduce(MPI_IN_PLACE, plain.data_ptr<float>(), static_cast<int>(numel), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  });

  torch::Tensor grads = torch::ones({numel}, torch::kFloat32);
  const auto bucket_bytes = static_cast<int64_t>(bucket_mb * 1024 * 1024);
  const double bucketed_s =
      time_it(repeats, [&] { sdtrain::allreduce_gradients(grads, *communicator, bucket_bytes); });

  // Sanity: ones stay ones through sum-then-average (both start from ones each round in effect).
  TORCH_CHECK(grads[0].item<float>() == 1.0f, "allreduce_bench: bucketed result is wrong");

  if (info.rank == 0) {
    std::printf("allreduce of %.1f MB float32 over %d ranks (MPI, CPU), median of %d\n", bytes / 1048576.0,
                info.world_size, repeats);
    std::printf("  plain MPI_Allreduce        %8.2f ms  %8.1f MB/s\n", plain_s * 1e3, bytes / plain_s / 1048576.0);
    std::printf("  bucketed (%5.1f MB buckets) %8.2f ms  %8.1f MB/s\n", bucket_mb, bucketed_s * 1e3,
                bytes / bucketed_s / 1048576.0);
    std::printf("  bandwidth ratio bucketed / plain: %.3f\n", plain_s / bucketed_s);
  }

  const OverlapTimes overlap = time_overlap(megabytes, bucket_bytes, repeats, *communicator);
  if (info.rank == 0) {
    std::printf("training step of an MLP with %.1f MB of gradients, %zu buckets (%zu sent during backward)\n",
                megabytes, overlap.buckets, overlap.sent_during_backward);
    std::printf("  backward only (no communication)   %8.2f ms\n", overlap.compute * 1e3);
    std::printf("  backward, then allreduce           %8.2f ms\n", overlap.sequential * 1e3);
    std::printf("  allreduce overlapped with backward %8.2f ms\n", overlap.overlapped * 1e3);
    std::printf("  step time ratio sequential / overlapped: %.3f\n", overlap.sequential / overlap.overlapped);
  }
  return 0;
}

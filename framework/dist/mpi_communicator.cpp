#include <mpi.h>

#include <chrono>
#include <thread>

#include "framework/dist/communicator.h"

namespace sdtrain {
namespace {

MPI_Datatype mpi_type(const torch::Tensor& tensor) {
  switch (tensor.scalar_type()) {
    case torch::kFloat32: return MPI_FLOAT;
    case torch::kFloat64: return MPI_DOUBLE;
    case torch::kInt64: return MPI_INT64_T;
    case torch::kInt32: return MPI_INT32_T;
    case torch::kUInt8: return MPI_UINT8_T;
    case torch::kInt8: return MPI_INT8_T;
    default:
      TORCH_CHECK(false, "MPI communicator: unsupported dtype ", tensor.scalar_type(),
                  " (use float32/float64/int64/int32/uint8)");
  }
}

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator(const RankInfo& info, double timeout_s) : info_(info), timeout_s_(timeout_s) {}

  int rank() const override { return info_.rank; }
  int world_size() const override { return info_.world_size; }
  std::string backend() const override { return "mpi"; }

  void allreduce_sum(torch::Tensor& tensor) override {
    check_cpu(tensor, "allreduce");
    if (info_.world_size == 1) return;
    MPI_Request request;
    MPI_Iallreduce(MPI_IN_PLACE, tensor.data_ptr(), static_cast<int>(tensor.numel()), mpi_type(tensor),
                   MPI_SUM, MPI_COMM_WORLD, &request);
    wait(request, "allreduce of " + std::to_string(tensor.numel()) + " elements");
  }

  void broadcast(torch::Tensor& tensor, int root) override {
    check_cpu(tensor, "broadcast");
    if (info_.world_size == 1) return;
    MPI_Request request;
    MPI_Ibcast(tensor.data_ptr(), static_cast<int>(tensor.numel()), mpi_type(tensor), root, MPI_COMM_WORLD,
               &request);
    wait(request, "broadcast from rank " + std::to_string(root));
  }

  void barrier() override {
    if (info_.world_size == 1) return;
    MPI_Request request;
    MPI_Ibarrier(MPI_COMM_WORLD, &request);
    wait(request, "barrier");
  }

 private:
  static void check_cpu(const torch::Tensor& tensor, const char* what) {
    TORCH_CHECK(tensor.device().is_cpu(), "MPI communicator: ", what, " needs a CPU tensor");
    TORCH_CHECK(tensor.is_contiguous(), "MPI communicator: ", what, " needs a contiguous tensor");
    TORCH_CHECK(tensor.numel() <= INT32_MAX, "MPI communicator: ", what, " of more than 2^31 elements");
  }

  void wait(MPI_Request& request, const std::string& what) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s_);
    int done = 0;
    for (int spins = 0;; ++spins) {
      MPI_Test(&request, &done, MPI_STATUS_IGNORE);
      if (done) return;
      if (std::chrono::steady_clock::now() > deadline) {
        ProcessGroup::abort_job("sdtrain: rank " + std::to_string(info_.rank) + ": collective " + what +
                                " did not complete within distributed.collective_timeout_s=" +
                                std::to_string(timeout_s_) +
                                " s; another rank has died or hung. Aborting the job.");
      }
      // Spin briefly for latency, then back off so a waiting rank does not burn a core.
      if (spins > 1000) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

  RankInfo info_;
  double timeout_s_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(const RankInfo& info, double timeout_s) {
  return std::make_unique<MpiCommunicator>(info, timeout_s);
}

}  // namespace sdtrain

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

#include "framework/dist/communicator.h"
#include "framework/dist/flight_recorder.h"
#include "framework/util/fault_points.h"

namespace sdtrain {
namespace {

constexpr int kTimeoutReportTag = 7001;
constexpr const char* kCollectiveTimeoutSetting = "distributed.collective_timeout_s";

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

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator(const RankInfo& info, double timeout_s, CollectiveFaultPoints faults)
      : info_(info), timeout_s_(timeout_s), faults_(faults) {
    if (info_.world_size > 1) MPI_Comm_dup(MPI_COMM_WORLD, &reports_);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (reports_ != MPI_COMM_NULL && !finalized) MPI_Comm_free(&reports_);
  }

  int rank() const override { return info_.rank; }
  int world_size() const override { return info_.world_size; }
  std::string backend() const override { return "mpi"; }

  void allreduce_sum(torch::Tensor& tensor) override { allreduce_async(tensor, ReduceOp::kSum)->wait(); }

  std::unique_ptr<PendingCollective> allreduce_async(const torch::Tensor& tensor, ReduceOp op) override {
    check_cpu(tensor, "allreduce");
    const std::string what = "allreduce of " + std::to_string(tensor.numel()) + " elements";
    const long long sequence = enter(what);
    auto pending = std::make_unique<MpiPending>(*this, what);
    pending->sequence = sequence;
    // World size 1: already complete (the average of one rank is its own tensor).
    if (info_.world_size == 1) {
      completed(sequence);
      return pending;
    }
    if (op == ReduceOp::kAverage) pending->average_over = tensor;
    MPI_Iallreduce(MPI_IN_PLACE, tensor.data_ptr(), static_cast<int>(tensor.numel()), mpi_type(tensor), MPI_SUM,
                   MPI_COMM_WORLD, &pending->request);
    return pending;
  }

  void broadcast(torch::Tensor& tensor, int root) override {
    check_cpu(tensor, "broadcast");
    const std::string what = "broadcast of " + std::to_string(tensor.numel()) + " elements from rank " +
                             std::to_string(root);
    const long long sequence = enter(what);
    if (info_.world_size == 1) return completed(sequence);
    MPI_Request request;
    MPI_Ibcast(tensor.data_ptr(), static_cast<int>(tensor.numel()), mpi_type(tensor), root, MPI_COMM_WORLD,
               &request);
    wait(request, sequence, what, timeout_s_, kCollectiveTimeoutSetting);
  }

  void barrier() override { barrier_with(timeout_s_, "barrier", kCollectiveTimeoutSetting); }

  void barrier(double timeout_s, const std::string& purpose) override {
    barrier_with(timeout_s, "barrier (" + purpose + ")", "its own timeout");
  }

 private:
  static void check_cpu(const torch::Tensor& tensor, const char* what) {
    TORCH_CHECK(tensor.device().is_cpu(), "MPI communicator: ", what, " needs a CPU tensor");
    TORCH_CHECK(tensor.is_contiguous(), "MPI communicator: ", what, " needs a contiguous tensor");
    TORCH_CHECK(tensor.numel() <= INT32_MAX, "MPI communicator: ", what, " of more than 2^31 elements");
  }

  void barrier_with(double timeout_s, const std::string& what, const std::string& setting) {
    const long long sequence = enter(what);
    if (info_.world_size == 1) return completed(sequence);
    MPI_Request request;
    MPI_Ibarrier(MPI_COMM_WORLD, &request);
    wait(request, sequence, what, timeout_s, setting);
  }

  /// A started MPI_Iallreduce; its wait() is the blocking collectives' wait. For an average,
  /// wait() divides the sum by the world size (once; test() only reports completion, so the
  /// caller never sees a half-finished result as finished).
  struct MpiPending : PendingCollective {
    MpiPending(MpiCommunicator& owner, std::string description) : communicator(owner), what(std::move(description)) {}
    bool test() override {
      if (request == MPI_REQUEST_NULL) return true;
      int done = 0;
      MPI_Test(&request, &done, MPI_STATUS_IGNORE);  // sets request to MPI_REQUEST_NULL when done
      if (done) communicator.completed(sequence);
      return done != 0;
    }
    void wait() override {
      if (request != MPI_REQUEST_NULL) {
        communicator.wait(request, sequence, what, communicator.timeout_s_, kCollectiveTimeoutSetting);
      }
      if (average_over.defined()) {
        torch::NoGradGuard no_grad;
        average_over.div_(communicator.info_.world_size);
        average_over = torch::Tensor();
      }
    }
    MpiCommunicator& communicator;
    std::string what;
    long long sequence = 0;
    MPI_Request request = MPI_REQUEST_NULL;
    torch::Tensor average_over;  // the tensor to divide by the world size once complete, if any
  };

  /// Counts collectives (every rank issues the same sequence, at any world size), records them in
  /// the flight recorder and passes the collective.before fault point; returns this collective's
  /// sequence number. With faults kOff the outer communicator counts and records instead.
  long long enter(const std::string& what) {
    ++sequence_;
    if (faults_ == CollectiveFaultPoints::kOn) {
      fault_point(FaultPoint::kCollectiveBefore, sequence_);
      FlightRecorder::instance().entered(sequence_, what);
    }
    return sequence_;
  }

  void completed(long long sequence) {
    if (faults_ == CollectiveFaultPoints::kOn) FlightRecorder::instance().completed(sequence);
  }

  /// Polls `request` (collective number `sequence`) until done or `timeout_s` passed.
  void wait(MPI_Request& request, long long sequence, const std::string& what, double timeout_s,
            const std::string& setting) {
    const auto start = std::chrono::steady_clock::now();
    int done = 0;
    for (int spins = 0;; ++spins) {
      MPI_Test(&request, &done, MPI_STATUS_IGNORE);
      if (done) return completed(sequence);
      if (seconds_since(start) > timeout_s) timed_out(sequence, what, timeout_s, setting);
      // Spin briefly for latency, then back off so a waiting rank does not burn a core.
      if (spins > 1000) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

  /// Finds out which ranks never reached collective #sequence, prints it once, ends the job.
  [[noreturn]] void timed_out(long long sequence, const std::string& what, double timeout_s,
                              const std::string& setting) {
    // Tell every other rank where this one waits. The sends are never completed: the job ends.
    const long long mine = sequence;
    std::vector<MPI_Request> sends(static_cast<std::size_t>(info_.world_size), MPI_REQUEST_NULL);
    for (int peer = 0; peer < info_.world_size; ++peer) {
      if (peer != info_.rank) MPI_Isend(&mine, 1, MPI_LONG_LONG, peer, kTimeoutReportTag, reports_, &sends[peer]);
    }
    // Collect the same from the others that time out in this collective within the grace period.
    std::vector<bool> arrived(static_cast<std::size_t>(info_.world_size), false);
    arrived[info_.rank] = true;
    const double grace_s = std::min(10.0, std::max(2.0, timeout_s / 10));
    const auto start = std::chrono::steady_clock::now();
    while (seconds_since(start) < grace_s) {
      int flag = 0;
      MPI_Status status;
      MPI_Iprobe(MPI_ANY_SOURCE, kTimeoutReportTag, reports_, &flag, &status);
      if (!flag) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      long long theirs = 0;
      MPI_Recv(&theirs, 1, MPI_LONG_LONG, status.MPI_SOURCE, kTimeoutReportTag, reports_, MPI_STATUS_IGNORE);
      if (theirs == mine) arrived[status.MPI_SOURCE] = true;
    }
    std::string missing;
    int lowest_arrived = info_.world_size;
    for (int peer = 0; peer < info_.world_size; ++peer) {
      if (!arrived[peer]) missing += (missing.empty() ? "" : ", ") + std::to_string(peer);
      if (arrived[peer] && lowest_arrived == info_.world_size) lowest_arrived = peer;
    }
    // Where every rank stands, from the files their flight recorders publish (a rank that hangs
    // outside MPI cannot answer above, but its recorder's thread still writes).
    const std::string recorder = FlightRecorder::instance().hang_report(info_.world_size);
    // One message for the job: the lowest waiting rank aborts first; the others only if it could not.
    if (info_.rank != lowest_arrived) std::this_thread::sleep_for(std::chrono::duration<double>(grace_s));
    ProcessGroup::abort_job(
        "sdtrain: rank " + std::to_string(info_.rank) + ": collective #" + std::to_string(mine) + " (" + what +
        ") did not complete within " + setting + "=" + std::to_string(timeout_s) + " s; " +
        (missing.empty() ? std::string("every rank reached it, so the backend itself is stuck")
                         : "rank(s) " + missing + " never reached it (hung or dead)") +
        (recorder.empty() ? "" : ". " + recorder) + ". Aborting the job.");
  }

  RankInfo info_;
  double timeout_s_;
  MPI_Comm reports_ = MPI_COMM_NULL;
  CollectiveFaultPoints faults_;
  long long sequence_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(const RankInfo& info, double timeout_s,
                                                    CollectiveFaultPoints faults) {
  return std::make_unique<MpiCommunicator>(info, timeout_s, faults);
}

}  // namespace sdtrain

#include "framework/dist/nccl_communicator.h"

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "framework/dist/flight_recorder.h"
#include "framework/util/fault_points.h"

namespace sdtrain {
namespace {

ncclDataType_t nccl_type(torch::ScalarType type) {
  switch (type) {
    case torch::kFloat32: return ncclFloat32;
    case torch::kFloat16: return ncclFloat16;
    case torch::kBFloat16: return ncclBfloat16;
    case torch::kFloat64: return ncclFloat64;
    case torch::kInt32: return ncclInt32;
    case torch::kInt64: return ncclInt64;
    case torch::kInt8: return ncclInt8;
    case torch::kUInt8: return ncclUint8;
    default:
      TORCH_CHECK(false, "NCCL communicator: unsupported dtype ", type,
                  " (use float32/float16/bfloat16/float64/int32/int64/int8/uint8)");
  }
}

void check_cuda(cudaError_t result, const char* call) {
  TORCH_CHECK(result == cudaSuccess, "NCCL communicator: ", call, " failed: ", cudaGetErrorString(result));
}

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(const RankInfo& info, const torch::Device& device, double timeout_s)
      : info_(info),
        device_(device),
        timeout_s_(timeout_s),
        host_(make_mpi_communicator(info, timeout_s, CollectiveFaultPoints::kOff)) {
    TORCH_CHECK(device_.is_cuda() && device_.has_index(), "NCCL communicator: needs a CUDA device with an index, got ",
                device_.str());
    try {
      init();
    } catch (...) {
      abort_communicator();
      release();
      throw;
    }
  }

  ~NcclCommunicator() override { release(); }

  int rank() const override { return info_.rank; }
  int world_size() const override { return info_.world_size; }
  std::string backend() const override { return "nccl"; }

  void allreduce_sum(torch::Tensor& tensor) override {
    const long long sequence = enter(describe("allreduce", tensor));
    if (tensor.device().is_cpu()) {
      host_->allreduce_sum(tensor);
      return FlightRecorder::instance().completed(sequence);
    }
    check_tensor(tensor, "allreduce");
    const ncclDataType_t type = nccl_type(tensor.scalar_type());
    const std::string what = describe("allreduce", tensor);
    run(what, [&] {
      return ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()), type, ncclSum,
                           comm_, stream_);
    });
    FlightRecorder::instance().completed(sequence);
  }

  std::unique_ptr<PendingCollective> allreduce_async(const torch::Tensor& tensor, ReduceOp op) override {
    const long long sequence = enter(describe("allreduce", tensor));
    if (tensor.device().is_cpu()) {
      return std::make_unique<RecordedPending>(host_->allreduce_async(tensor, op), sequence);
    }
    check_tensor(tensor, "allreduce");
    const ncclDataType_t type = nccl_type(tensor.scalar_type());
    auto pending = std::make_unique<NcclPending>(*this, describe("allreduce", tensor));
    pending->sequence = sequence;
    c10::cuda::CUDAGuard guard(device_);
    enqueue(pending->what, timeout_s_, [&] {
      return ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()), type,
                           op == ReduceOp::kAverage ? ncclAvg : ncclSum, comm_, stream_);
    });
    check_cuda(cudaEventCreateWithFlags(&pending->done, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    check_cuda(cudaEventRecord(pending->done, stream_), "cudaEventRecord");
    return pending;
  }

  void broadcast(torch::Tensor& tensor, int root) override {
    const std::string what = describe("broadcast", tensor) + " from rank " + std::to_string(root);
    const long long sequence = enter(what);
    if (tensor.device().is_cpu()) {
      host_->broadcast(tensor, root);
      return FlightRecorder::instance().completed(sequence);
    }
    check_tensor(tensor, "broadcast");
    TORCH_CHECK(root >= 0 && root < info_.world_size, "NCCL communicator: broadcast root ", root,
                " outside 0..", info_.world_size - 1);
    const ncclDataType_t type = nccl_type(tensor.scalar_type());
    run(what, [&] {
      return ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()), type, root,
                           comm_, stream_);
    });
    FlightRecorder::instance().completed(sequence);
  }

  /// A one-element NCCL allreduce awaited on the host: it completes on a rank only once every
  /// rank has issued it, and after all NCCL work this rank queued before.
  void barrier() override { barrier(timeout_s_, "barrier"); }

  /// A barrier with its own timeout, for fences around work whose length differs between ranks;
  /// `purpose` names it in the timeout message.
  void barrier(double timeout_s, const std::string& purpose) override {
    const long long sequence = enter(purpose);
    run(
        purpose,
        [&] {
          return ncclAllReduce(barrier_scratch_.data_ptr(), barrier_scratch_.data_ptr(), 1, ncclFloat32, ncclSum,
                               comm_, stream_);
        },
        timeout_s);
    FlightRecorder::instance().completed(sequence);
  }

 private:
  /// Counts the collectives of this communicator, on CUDA and CPU tensors alike (the host
  /// communicator does not count), passes the collective.before fault point and records the
  /// collective in the flight recorder; returns its sequence number.
  long long enter(const std::string& what) {
    fault_point(FaultPoint::kCollectiveBefore, ++sequence_);
    FlightRecorder::instance().entered(sequence_, what);
    return sequence_;
  }

  /// A host (MPI) collective of this communicator's numbering: marks it completed in the flight
  /// recorder once the host communicator says so.
  struct RecordedPending : PendingCollective {
    RecordedPending(std::unique_ptr<PendingCollective> inner, long long sequence)
        : inner(std::move(inner)), sequence(sequence) {}
    bool test() override {
      const bool done = inner->test();
      if (done) FlightRecorder::instance().completed(sequence);
      return done;
    }
    void wait() override {
      inner->wait();
      FlightRecorder::instance().completed(sequence);
    }
    std::unique_ptr<PendingCollective> inner;
    long long sequence;
  };

  void init() {
    c10::cuda::CUDAGuard guard(device_);
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    check_cuda(cudaEventCreateWithFlags(&inputs_ready_, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    check_cuda(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    barrier_scratch_ = torch::zeros({1}, torch::TensorOptions().dtype(torch::kFloat32).device(device_));

    ncclUniqueId id{};
    if (info_.rank == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    torch::Tensor id_bytes =
        torch::from_blob(&id, {static_cast<int64_t>(sizeof(id))}, torch::TensorOptions().dtype(torch::kUInt8));
    host_->broadcast(id_bytes, 0);

    // Non-blocking: initialisation and every call return at once (ncclInProgress) and are
    // polled, so a peer that never joins ends in a timeout instead of a hang.
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const ncclResult_t started = ncclCommInitRankConfig(&comm_, info_.world_size, id, info_.rank, &config);
    if (started != ncclSuccess && started != ncclInProgress) {
      check_nccl(started, "ncclCommInitRankConfig");
    }
    wait_until_issued("communicator initialisation (ncclCommInitRankConfig)", timeout_s_);
  }

  void release() noexcept {
    if (comm_ != nullptr) {
      // Finalize flushes this rank's outstanding operations (polled: the communicator is
      // non-blocking); when that fails or cannot finish in time (a peer is gone) abort instead,
      // which never blocks.
      ncclResult_t state = ncclCommFinalize(comm_);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s_);
      while (state == ncclInProgress && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess) break;
      }
      if (state == ncclSuccess) {
        ncclCommDestroy(comm_);
        comm_ = nullptr;
      } else {
        abort_communicator();
      }
    }
    if (done_ != nullptr) cudaEventDestroy(done_);
    if (inputs_ready_ != nullptr) cudaEventDestroy(inputs_ready_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    done_ = inputs_ready_ = nullptr;
    stream_ = nullptr;
  }

  void check_tensor(const torch::Tensor& tensor, const char* what) const {
    TORCH_CHECK(tensor.device() == device_, "NCCL communicator: ", what, " of a tensor on ", tensor.device().str(),
                ", but this rank's communicator is on ", device_.str());
    TORCH_CHECK(tensor.is_contiguous(), "NCCL communicator: ", what, " needs a contiguous tensor");
  }

  static std::string describe(const char* collective, const torch::Tensor& tensor) {
    std::ostringstream text;
    text << collective << " of " << tensor.numel() << " " << tensor.scalar_type() << " elements";
    return text.str();
  }

  void check_nccl(ncclResult_t result, const char* call) const {
    TORCH_CHECK(result == ncclSuccess, "NCCL communicator on rank ", info_.rank, ": ", call,
                " failed: ", ncclGetErrorString(result), last_error());
  }

  std::string last_error() const {
    const char* text = ncclGetLastError(comm_);
    return text != nullptr && *text != '\0' ? std::string(" (") + text + ")" : std::string();
  }

  /// Queues `launch` (an NCCL call on stream_) behind the work already queued on the caller's
  /// current stream, and polls until NCCL has issued it.
  template <class Launch>
  void enqueue(const std::string& what, double timeout_s, Launch launch) {
    const cudaStream_t compute = c10::cuda::getCurrentCUDAStream(device_.index()).stream();
    check_cuda(cudaEventRecord(inputs_ready_, compute), "cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(stream_, inputs_ready_, 0), "cudaStreamWaitEvent");
    const ncclResult_t issued = launch();
    if (issued != ncclSuccess && issued != ncclInProgress) {
      fail(what, std::string("NCCL returned ") + ncclGetErrorString(issued) + last_error());
    }
    wait_until_issued(what, timeout_s);
  }

  /// Enqueues `launch` between the caller's stream and back, then waits on the host for it to
  /// finish on the device.
  template <class Launch>
  void run(const std::string& what, Launch launch, double timeout_s = -1) {
    if (timeout_s < 0) timeout_s = timeout_s_;
    c10::cuda::CUDAGuard guard(device_);
    enqueue(what, timeout_s, launch);
    const cudaStream_t compute = c10::cuda::getCurrentCUDAStream(device_.index()).stream();
    check_cuda(cudaEventRecord(done_, stream_), "cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(compute, done_, 0), "cudaStreamWaitEvent");
    // The host waits for completion, so the caching allocator cannot hand the tensor's memory to
    // another stream while NCCL still uses it (no recordStream needed).
    wait_until_done(done_, what, timeout_s);
  }

  /// A started allreduce: `done` is recorded on stream_ after it. wait() polls it like run()
  /// does, then orders the caller's current stream after it.
  struct NcclPending : PendingCollective {
    NcclPending(NcclCommunicator& owner, std::string description) : communicator(owner), what(std::move(description)) {}
    ~NcclPending() override {
      if (done != nullptr) cudaEventDestroy(done);
    }
    bool test() override {
      const bool done_now = waited || cudaEventQuery(done) == cudaSuccess;
      if (done_now) FlightRecorder::instance().completed(sequence);
      return done_now;
    }
    void wait() override {
      if (waited) return;
      c10::cuda::CUDAGuard guard(communicator.device_);
      communicator.wait_until_done(done, what, communicator.timeout_s_);
      const cudaStream_t compute = c10::cuda::getCurrentCUDAStream(communicator.device_.index()).stream();
      check_cuda(cudaStreamWaitEvent(compute, done, 0), "cudaStreamWaitEvent");
      waited = true;
      FlightRecorder::instance().completed(sequence);
    }
    NcclCommunicator& communicator;
    std::string what;
    long long sequence = 0;
    cudaEvent_t done = nullptr;
    bool waited = false;
  };

  /// Polls the non-blocking communicator until the last call left the ncclInProgress state.
  void wait_until_issued(const std::string& what, double timeout_s) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    for (int spins = 0;; ++spins) {
      ncclResult_t state = ncclSuccess;
      const ncclResult_t queried = ncclCommGetAsyncError(comm_, &state);
      if (queried != ncclSuccess) fail(what, std::string("ncclCommGetAsyncError: ") + ncclGetErrorString(queried));
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) fail(what, std::string("NCCL reported ") + ncclGetErrorString(state) + last_error());
      if (std::chrono::steady_clock::now() > deadline) time_out(what, timeout_s);
      if (spins > 1000) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

  /// Polls `done` (recorded after the collective) and the communicator's asynchronous error.
  void wait_until_done(cudaEvent_t done, const std::string& what, double timeout_s) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    for (int spins = 0;; ++spins) {
      const cudaError_t query = cudaEventQuery(done);
      if (query == cudaSuccess) return;
      if (query != cudaErrorNotReady) {
        fail(what, std::string("CUDA reported ") + cudaGetErrorString(query));
      }
      ncclResult_t state = ncclSuccess;
      ncclCommGetAsyncError(comm_, &state);
      if (state != ncclSuccess && state != ncclInProgress) {
        fail(what, std::string("NCCL reported ") + ncclGetErrorString(state) + last_error());
      }
      if (std::chrono::steady_clock::now() > deadline) time_out(what, timeout_s);
      // Spin briefly for latency, then back off so a waiting rank does not burn a core.
      if (spins > 1000) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

  [[noreturn]] void time_out(const std::string& what, double timeout_s) {
    abort_communicator();
    std::ostringstream seconds;
    seconds << timeout_s;
    // The flight recorders' files say which rank is behind: the stuck NCCL communicator cannot.
    const std::string recorder = FlightRecorder::instance().hang_report(info_.world_size);
    ProcessGroup::abort_job("sdtrain: rank " + std::to_string(info_.rank) + ": NCCL " + what + " did not complete within " +
                            (timeout_s == timeout_s_ ? "distributed.collective_timeout_s=" : "its timeout of ") +
                            seconds.str() + " s; another rank has died or hung" +
                            (recorder.empty() ? "" : ". " + recorder) + ". Aborting the job.");
  }

  [[noreturn]] void fail(const std::string& what, const std::string& reason) {
    const std::string message = "sdtrain: rank " + std::to_string(info_.rank) + ": NCCL " + what + " failed: " + reason +
                                ". Aborting the job.";
    abort_communicator();
    ProcessGroup::abort_job(message);
  }

  /// After an error or timeout nothing can be assumed about queued NCCL work; abort never blocks.
  void abort_communicator() noexcept {
    if (comm_ == nullptr) return;
    ncclCommAbort(comm_);
    comm_ = nullptr;
  }

  RankInfo info_;
  torch::Device device_;
  double timeout_s_;
  std::unique_ptr<Communicator> host_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t inputs_ready_ = nullptr;
  cudaEvent_t done_ = nullptr;
  torch::Tensor barrier_scratch_;
  long long sequence_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(const RankInfo& info, const torch::Device& device,
                                                     double timeout_s) {
  return std::make_unique<NcclCommunicator>(info, device, timeout_s);
}

}  // namespace sdtrain

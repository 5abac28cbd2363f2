// Trains the test denoiser under mpirun with SIGUSR1 raised on one rank only, at the end of a
// chosen step (in its callbacks, before the step's stop-flag exchange), through a communicator
// that records every collective. Each rank then checks how the stop flag travelled and prints
// "rank R: stopped at step S" and "rank R: ok", or the first thing that differs:
//   - the flag (the only one-element int32 collective) went out once per step boundary, by a
//     non-blocking allreduce that was awaited at the next boundary, in flight across a step;
//   - no blocking collective carried it.
//   mpirun -np N stop_flag_probe CONFIG SIGNAL_RANK SIGNAL_STEP
// CONFIG must list the callback "probe_stop_signal", which this program registers.
#include <google/protobuf/empty.pb.h>

#include <csignal>
#include <cstdio>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "framework/config/config_loader.h"
#include "framework/dist/communicator.h"
#include "framework/dist/process_group.h"
#include "framework/dist/stop_signal.h"
#include "framework/train/trainer.h"
#include "plugins/builtin_plugins.h"
#include "sdtrain/callback.h"
#include "sdtrain/plugin.h"

namespace {

int g_signal_rank = -1;
int64_t g_signal_step = -1;

/// Raises SIGUSR1 on rank g_signal_rank at the end of step g_signal_step, as a pre-emption that
/// reaches that rank alone would.
class RaiseStopSignal : public sdtrain::Callback {
 public:
  void on_step_end(sdtrain::TrainerHandle& trainer, const sdtrain::StepMetrics&) override {
    if (trainer.rank() == g_signal_rank && trainer.progress().step == g_signal_step) std::raise(SIGUSR1);
  }
};

SDTRAIN_REGISTER_CALLBACK("probe_stop_signal", google::protobuf::Empty,
                          "TEST ONLY: SIGUSR1 on one rank at one step (stop_flag_probe)",
                          [](const google::protobuf::Empty&, const sdtrain::PluginContext&) {
                            return std::make_unique<RaiseStopSignal>();
                          });

/// One collective as this rank issued it, with the trainer's step count when it was started and
/// when it was awaited (-1 before the trainer exists; waited -2: never awaited).
struct Collective {
  bool blocking = false;
  int64_t numel = 0;
  torch::ScalarType dtype = torch::kFloat32;
  int64_t started_step = -1;
  int64_t waited_step = -2;
};

/// Passes every call on to a real communicator and records it.
class RecordingCommunicator : public sdtrain::Communicator {
 public:
  explicit RecordingCommunicator(sdtrain::Communicator& inner) : inner_(inner) {}
  /// From now on, collectives are recorded with `progress`'s step count.
  void follow(const sdtrain::TrainProgress& progress) { progress_ = &progress; }
  const std::vector<Collective>& collectives() const { return collectives_; }

  int rank() const override { return inner_.rank(); }
  int world_size() const override { return inner_.world_size(); }
  void allreduce_sum(torch::Tensor& tensor) override {
    record(true, tensor);
    inner_.allreduce_sum(tensor);
  }
  std::unique_ptr<sdtrain::PendingCollective> allreduce_async(const torch::Tensor& tensor,
                                                              sdtrain::ReduceOp op) override {
    record(false, tensor);
    return std::make_unique<RecordingPending>(*this, collectives_.size() - 1, inner_.allreduce_async(tensor, op));
  }
  void broadcast(torch::Tensor& tensor, int root) override {
    record(true, tensor);
    inner_.broadcast(tensor, root);
  }
  void barrier() override {
    record(true, torch::Tensor());
    inner_.barrier();
  }
  void barrier(double timeout_s, const std::string& purpose) override {
    record(true, torch::Tensor());
    inner_.barrier(timeout_s, purpose);
  }
  std::string backend() const override { return inner_.backend(); }

 private:
  struct RecordingPending : sdtrain::PendingCollective {
    RecordingPending(RecordingCommunicator& owner, std::size_t index,
                     std::unique_ptr<sdtrain::PendingCollective> inner)
        : owner(owner), index(index), inner(std::move(inner)) {}
    bool test() override { return inner->test(); }
    void wait() override {
      inner->wait();
      Collective& collective = owner.collectives_[index];
      if (collective.waited_step == -2) collective.waited_step = owner.step();
    }
    RecordingCommunicator& owner;
    std::size_t index;
    std::unique_ptr<sdtrain::PendingCollective> inner;
  };

  int64_t step() const { return progress_ != nullptr ? progress_->step : -1; }
  void record(bool blocking, const torch::Tensor& tensor) {
    Collective collective;
    collective.blocking = blocking;
    if (tensor.defined()) {
      collective.numel = tensor.numel();
      collective.dtype = tensor.scalar_type();
    }
    collective.started_step = step();
    collectives_.push_back(collective);
  }

  sdtrain::Communicator& inner_;
  const sdtrain::TrainProgress* progress_ = nullptr;
  std::vector<Collective> collectives_;
};

void check(bool condition, const std::string& what) {
  if (!condition) throw std::runtime_error(what);
}

/// The stop flag's collectives of a run that stopped at step `stopped`.
void check_flag_collectives(const std::vector<Collective>& collectives, int64_t stopped) {
  std::vector<int64_t> sent_at;
  for (const Collective& collective : collectives) {
    if (collective.numel != 1 || collective.dtype != torch::kInt32) continue;  // not the flag
    const std::string which = "the stop flag sent at step " + std::to_string(collective.started_step);
    check(!collective.blocking, which + " went by a blocking collective");
    check(collective.waited_step != -2, which + " was never awaited");
    // Read at the next boundary; the last one where training ends, still at the step it was sent.
    const int64_t read_at = collective.started_step < stopped ? collective.started_step + 1 : stopped;
    check(collective.waited_step == read_at, which + " was awaited at step " +
                                                 std::to_string(collective.waited_step) + ", expected " +
                                                 std::to_string(read_at));
    sent_at.push_back(collective.started_step);
  }
  std::vector<int64_t> expected;
  for (int64_t step = 1; step <= stopped; ++step) expected.push_back(step);
  std::string sent;
  for (const int64_t step : sent_at) sent += " " + std::to_string(step);
  check(sent_at == expected, "the stop flag went out at steps" + sent + ", expected once at each of 1.." +
                                 std::to_string(stopped));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: mpirun -np N stop_flag_probe CONFIG SIGNAL_RANK SIGNAL_STEP\n");
    return 2;
  }
  sdtrain::anchor_builtin_plugins();
  g_signal_rank = std::stoi(argv[2]);
  g_signal_step = std::stoll(argv[3]);
  sdtrain::StopSignalHandler stop_signals;  // as run_training: installed before MPI starts
  sdtrain::ProcessGroup group;
  const int rank = group.info().rank;
  auto mpi = sdtrain::make_mpi_communicator(group.info(), 60.0);
  RecordingCommunicator recording(*mpi);
  int status = 0;
  try {
    const sdtrain::LoadedConfig config = sdtrain::load_train_config(argv[1], {});
    sdtrain::Trainer trainer(config, group.info(), recording);
    recording.follow(trainer.progress());
    trainer.fit();
    check(trainer.stopped_by_signal(), "the run was not stopped by the signal");
    const int64_t stopped = trainer.progress().step;
    std::printf("rank %d: stopped at step %lld\n", rank, static_cast<long long>(stopped));
    check((rank == g_signal_rank) == (sdtrain::received_stop_signal() == SIGUSR1),
          "rank " + std::to_string(rank) + " received signal " + std::to_string(sdtrain::received_stop_signal()));
    check_flag_collectives(recording.collectives(), stopped);
    std::printf("rank %d: ok\n", rank);
  } catch (const std::exception& error) {
    std::printf("rank %d: error: %s\n", rank, error.what());
    status = 1;
  }
  std::fflush(stdout);
  mpi->barrier();
  return status;
}

#pragma once
/// Graceful stop on SIGTERM / SIGUSR1 (Slurm pre-emption, `scancel`, `mpirun` forwarding SIGUSR1).
///
/// The handler only sets a flag (nothing else is async-signal-safe). The trainer brings the
/// ranks' flags together at every optimizer-step boundary with a StopFlagExchange
/// (stop_flag_exchange.h): a non-blocking allreduce read one boundary later, so that a signal
/// delivered to one rank stops all ranks at the same step, one step after the step it arrived in
/// (with more than one rank), and no step waits for it. The trainer then writes a checkpoint and
/// the process exits with `kStopSignalExitCode`.

namespace sdtrain {

/// Exit code of a run stopped by SIGTERM/SIGUSR1 after its checkpoint was written: 75
/// (EX_TEMPFAIL, "try again later"). Slurm requeues on it with `RequeueExit=75` in slurm.conf,
/// or launch/slurm/sdtrain.sbatch requeues itself with `scontrol requeue`; the next run resumes
/// with `--resume auto`.
constexpr int kStopSignalExitCode = 75;

/// Installs the SIGTERM and SIGUSR1 handlers for its lifetime (process-wide; the previous
/// handlers come back on destruction). One at a time per process. A second SIGTERM while a stop
/// is already pending ends the process at once with 128+SIGTERM (the usual "I mean it").
class StopSignalHandler {
 public:
  StopSignalHandler();
  ~StopSignalHandler();
  StopSignalHandler(const StopSignalHandler&) = delete;
  StopSignalHandler& operator=(const StopSignalHandler&) = delete;
};

/// The first stop signal this process received since a handler was installed (0: none).
int received_stop_signal();

}  // namespace sdtrain

#pragma once
/// The stop flags of all ranks (stop_signal.h) brought together without making any step wait for
/// them. At every optimizer-step boundary each rank reads the sum of the flags that every rank
/// sent at the previous boundary (a non-blocking allreduce that has had a whole step to travel),
/// then sends its flag as it is now. Every rank reads the same sum at the same boundary, so a
/// signal that reaches one rank still stops all of them at the same step; the price is one step:
/// a signal that arrives during step n stops the run at the end of step n + 1, where a blocking
/// allreduce at each boundary would stop it at the end of step n (docs/multi-node.md).
///
/// Why not a blocking allreduce: the host would wait at every step for the slowest rank to reach
/// the same point, so no rank's host could run ahead of its GPU (docs/gpu.md, host waits).
#include <memory>

#include <torch/types.h>

#include "framework/dist/communicator.h"

namespace sdtrain {

class StopFlagExchange {
 public:
  /// `communicator` must outlive the exchange.
  explicit StopFlagExchange(Communicator& communicator);
  /// Waits for an allreduce still in flight (errors swallowed: this runs while an exception ends
  /// the rank), so that MPI never writes into freed memory; GradientReducer does the same.
  ~StopFlagExchange();
  StopFlagExchange(const StopFlagExchange&) = delete;
  StopFlagExchange& operator=(const StopFlagExchange&) = delete;

  /// Collective: every rank calls it at every optimizer-step boundary, at the same place in its
  /// sequence of collectives. Waits for the allreduce the previous call started (false at the
  /// first call) and returns, on every rank alike, whether any rank had received a stop signal by
  /// then; then starts the non-blocking allreduce of this rank's flag as it is now, which the next
  /// call reads. So it never waits for a rank that is less than a step behind, and issues exactly
  /// one collective per call (Communicator::allreduce_async of one int32, on the host: MPI, also
  /// under the NCCL backend).
  /// With world size 1 there is nothing to exchange: it returns this process's flag now, at once,
  /// and issues no collective (a signal then stops the run at the end of the step it arrived in).
  bool any_rank_stopping();

  /// Collective, where training ends (every rank at the same point): waits for the allreduce in
  /// flight, if any, and returns whether any rank had received a stop signal when it was started
  /// (false when none was in flight). Afterwards nothing is in flight.
  bool finish();

 private:
  Communicator& communicator_;
  torch::Tensor flag_;  ///< one int32 on the host: this rank's flag when sent, the sum once arrived
  std::unique_ptr<PendingCollective> in_flight_;
};

}  // namespace sdtrain

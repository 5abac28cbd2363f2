#include "framework/dist/stop_flag_exchange.h"

#include "framework/dist/stop_signal.h"

namespace sdtrain {

StopFlagExchange::StopFlagExchange(Communicator& communicator)
    : communicator_(communicator), flag_(torch::zeros({1}, torch::kInt32)) {}

StopFlagExchange::~StopFlagExchange() {
  if (!in_flight_) return;
  try {
    in_flight_->wait();
  } catch (...) {
  }
}

bool StopFlagExchange::any_rank_stopping() {
  if (communicator_.world_size() == 1) return received_stop_signal() != 0;
  const bool any = finish();
  // The flag is read after the wait, as late as possible: a signal that arrived while waiting
  // still goes out with this boundary's allreduce.
  flag_.data_ptr<int32_t>()[0] = received_stop_signal() != 0 ? 1 : 0;
  in_flight_ = communicator_.allreduce_async(flag_, ReduceOp::kSum);
  return any;
}

bool StopFlagExchange::finish() {
  if (!in_flight_) return false;
  in_flight_->wait();
  in_flight_.reset();
  return flag_.data_ptr<int32_t>()[0] > 0;
}

}  // namespace sdtrain

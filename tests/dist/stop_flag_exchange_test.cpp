// StopFlagExchange against a scripted communicator that plays the other ranks: the flags travel
// by non-blocking allreduces only, one per step boundary, each read at the next boundary (in
// flight across a step), so a signal is acted on one step later than it arrived, on every rank
// alike; with one rank it is acted on at once, without any collective. The same under mpirun with
// the real trainer: tests/dist_check/stop_flag_test.cpp.
#include <gtest/gtest.h>

#include <csignal>
#include <memory>
#include <string>
#include <vector>

#include "framework/dist/stop_flag_exchange.h"
#include "framework/dist/stop_signal.h"

namespace sdtrain {
namespace {

/// A communicator of `world_size` ranks whose other ranks are scripted: each allreduce adds
/// `others_flag` (their flags' sum at the time it was started) when it is awaited. Records which
/// collectives were started and awaited at which boundary (`boundary`, set by the test).
class ScriptedRanks : public Communicator {
 public:
  explicit ScriptedRanks(int world_size) : world_size_(world_size) {}
  int rank() const override { return 0; }
  int world_size() const override { return world_size_; }
  void allreduce_sum(torch::Tensor&) override { ++blocking; }
  std::unique_ptr<PendingCollective> allreduce_async(const torch::Tensor& tensor, ReduceOp op) override {
    EXPECT_EQ(op, ReduceOp::kSum);
    EXPECT_EQ(tensor.numel(), 1);
    EXPECT_EQ(tensor.scalar_type(), torch::kInt32);
    EXPECT_TRUE(tensor.device().is_cpu()) << "the flag is a host value";
    started_at.push_back(boundary);
    waited_at.push_back(-1);
    return std::make_unique<Pending>(*this, tensor, started_at.size() - 1, others_flag);
  }
  void broadcast(torch::Tensor&, int) override { ++blocking; }
  void barrier() override { ++blocking; }
  void barrier(double, const std::string&) override { ++blocking; }
  std::string backend() const override { return "scripted"; }

  int boundary = 0;
  int others_flag = 0;
  int blocking = 0;                 ///< blocking collectives entered
  std::vector<int> started_at;      ///< by allreduce: the boundary it was started at
  std::vector<int> waited_at;       ///< by allreduce: the boundary it was awaited at, -1 not yet

 private:
  struct Pending : PendingCollective {
    Pending(ScriptedRanks& owner, torch::Tensor flag, std::size_t index, int others)
        : owner(owner), flag(std::move(flag)), index(index), others(others) {}
    bool test() override { return false; }
    void wait() override {
      if (done) return;
      done = true;
      flag.data_ptr<int32_t>()[0] += others;
      owner.waited_at[index] = owner.boundary;
    }
    ScriptedRanks& owner;
    torch::Tensor flag;
    std::size_t index;
    int others;
    bool done = false;
  };

  int world_size_;
};

TEST(StopFlagExchange, ALocalSignalIsReadOneBoundaryLaterThroughNonBlockingAllreducesOnly) {
  ScriptedRanks ranks(2);
  StopSignalHandler handler;
  std::vector<bool> stopping;
  {
    StopFlagExchange flags(ranks);
    for (ranks.boundary = 1; ranks.boundary <= 4; ++ranks.boundary) {
      stopping.push_back(flags.any_rank_stopping());
      // The allreduce started here is still in flight during the next step.
      EXPECT_EQ(ranks.waited_at.back(), -1) << "boundary " << ranks.boundary;
      if (ranks.boundary == 2) {
        ASSERT_EQ(std::raise(SIGUSR1), 0);  // during step 3
      }
    }
    ranks.boundary = 5;  // the end of training
    EXPECT_TRUE(flags.finish());
    EXPECT_FALSE(flags.finish()) << "nothing in flight any more";
  }
  // Sent at the end of step 3, read at the end of step 4: one step later than a blocking allreduce.
  EXPECT_EQ(stopping, (std::vector<bool>{false, false, false, true}));
  EXPECT_EQ(ranks.blocking, 0);
  EXPECT_EQ(ranks.started_at, (std::vector<int>{1, 2, 3, 4}));
  EXPECT_EQ(ranks.waited_at, (std::vector<int>{2, 3, 4, 5}));
}

TEST(StopFlagExchange, AnotherRanksSignalStopsThisRankAtTheSameBoundary) {
  ScriptedRanks ranks(3);
  StopSignalHandler handler;
  StopFlagExchange flags(ranks);
  std::vector<bool> stopping;
  for (ranks.boundary = 1; ranks.boundary <= 3; ++ranks.boundary) {
    if (ranks.boundary == 2) ranks.others_flag = 1;  // another rank had a signal by its boundary 2
    stopping.push_back(flags.any_rank_stopping());
  }
  EXPECT_EQ(received_stop_signal(), 0);
  EXPECT_EQ(stopping, (std::vector<bool>{false, false, true}));
  EXPECT_EQ(ranks.blocking, 0);
}

TEST(StopFlagExchange, WithOneRankASignalIsActedOnAtOnceWithoutCollectives) {
  ScriptedRanks ranks(1);
  StopSignalHandler handler;
  StopFlagExchange flags(ranks);
  EXPECT_FALSE(flags.any_rank_stopping());
  ASSERT_EQ(std::raise(SIGUSR1), 0);
  EXPECT_TRUE(flags.any_rank_stopping());
  EXPECT_FALSE(flags.finish());
  EXPECT_TRUE(ranks.started_at.empty());
  EXPECT_EQ(ranks.blocking, 0);
}

TEST(StopFlagExchange, DestructionAwaitsTheAllreduceInFlight) {
  ScriptedRanks ranks(2);
  {
    StopFlagExchange flags(ranks);
    ranks.boundary = 1;
    flags.any_rank_stopping();
    ranks.boundary = 2;  // an exception leaves the loop before the next boundary
  }
  EXPECT_EQ(ranks.waited_at, std::vector<int>{2});
}

}  // namespace
}  // namespace sdtrain

// The stop-signal handler: SIGUSR1/SIGTERM only set a flag that the trainer polls at step
// boundaries (with one rank at once: StopFlagExchange exchanges nothing); the previous handlers
// come back afterwards.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>

#include "framework/dist/stop_flag_exchange.h"
#include "framework/dist/stop_signal.h"

namespace sdtrain {
namespace {

std::unique_ptr<Communicator> single_rank() { return make_mpi_communicator(RankInfo{}, 10.0); }

TEST(StopSignal, Usr1SetsTheFlagAndDoesNotKill) {
  auto communicator = single_rank();
  StopFlagExchange flags(*communicator);
  StopSignalHandler handler;
  EXPECT_EQ(received_stop_signal(), 0);
  EXPECT_FALSE(flags.any_rank_stopping());
  ASSERT_EQ(std::raise(SIGUSR1), 0);
  EXPECT_EQ(received_stop_signal(), SIGUSR1);
  EXPECT_TRUE(flags.any_rank_stopping());
  // The first signal is the one reported.
  ASSERT_EQ(std::raise(SIGUSR1), 0);
  EXPECT_EQ(received_stop_signal(), SIGUSR1);
}

TEST(StopSignal, SigtermSetsTheFlagAndASecondOneEndsTheProcess) {
  EXPECT_EXIT(
      {
        StopSignalHandler handler;
        std::raise(SIGTERM);
        if (received_stop_signal() != SIGTERM) std::_Exit(3);
        std::raise(SIGTERM);
        std::_Exit(4);  // not reached
      },
      ::testing::ExitedWithCode(128 + SIGTERM), "");
}

TEST(StopSignal, PreviousHandlersComeBackAndOnlyOneIsInstalledAtATime) {
  static volatile std::sig_atomic_t seen = 0;
  auto previous = std::signal(SIGUSR1, [](int) { seen = 1; });
  {
    StopSignalHandler handler;
    EXPECT_THROW(StopSignalHandler second, std::logic_error);
  }
  std::raise(SIGUSR1);
  EXPECT_EQ(seen, 1);
  std::signal(SIGUSR1, previous);
  EXPECT_EQ(kStopSignalExitCode, 75);
}

}  // namespace
}  // namespace sdtrain

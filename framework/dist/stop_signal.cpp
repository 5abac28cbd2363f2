#include "framework/dist/stop_signal.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <stdexcept>

namespace sdtrain {
namespace {

std::atomic<int> g_signal{0};
std::atomic<bool> g_installed{false};
struct sigaction g_previous_term;
struct sigaction g_previous_usr1;

static_assert(std::atomic<int>::is_always_lock_free, "the stop flag must be lock-free to be set in a handler");

extern "C" void on_stop_signal(int number) {
  int expected = 0;
  if (!g_signal.compare_exchange_strong(expected, number) && number == SIGTERM) _exit(128 + SIGTERM);
}

}  // namespace

StopSignalHandler::StopSignalHandler() {
  if (g_installed.exchange(true)) throw std::logic_error("StopSignalHandler: one is already installed");
  g_signal = 0;
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // system calls in flight (file writes, MPI polling) carry on
  sigaction(SIGTERM, &action, &g_previous_term);
  sigaction(SIGUSR1, &action, &g_previous_usr1);
}

StopSignalHandler::~StopSignalHandler() {
  sigaction(SIGTERM, &g_previous_term, nullptr);
  sigaction(SIGUSR1, &g_previous_usr1, nullptr);
  g_installed = false;
}

int received_stop_signal() { return g_signal.load(); }

}  // namespace sdtrain

#include "mil/util/stop_signal.hpp"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <mutex>
#include <thread>

namespace mil {
namespace {

std::atomic<int> g_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "read and written from a signal handler");

void record(int sig) {
  int none = 0;
  if (g_signal.compare_exchange_strong(none, sig) || none != sig) return;
  // Asked twice: give up on the clean stop, ending the process as the signal would without a handler.
  std::signal(sig, SIG_DFL);
  sigset_t only;
  sigemptyset(&only);
  sigaddset(&only, sig);
  pthread_sigmask(SIG_UNBLOCK, &only, nullptr);
  raise(sig);
}

// Only reached by a thread that existed before install_stop_handlers() (and so does not block the signals).
extern "C" void on_stop_signal(int sig) {
  record(sig);
}

sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

}  // namespace

void install_stop_handlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Blocked here, so in every thread made from now on (OpenMP's, MPI's, the loader's): the signals are
    // taken by the waiting thread below and never interrupt a compute kernel. oneDNN's JIT f32 GEMM kernels
    // point the stack register into a heap buffer while they run, and a handler's frame written there
    // corrupts the heap (uxlfoundation/oneDNN#4845, fixed in v3.11.2; Debian ships 2.6).
    const sigset_t set = stop_signals();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    struct sigaction action;
    std::memset(&action, 0, sizeof(action));
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;  // reads and writes in flight carry on; the trainer polls the flag
    sigaction(SIGTERM, &action, nullptr);
    sigaction(SIGINT, &action, nullptr);
    std::thread([set] {
      for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) == 0) record(sig);
      }
    }).detach();
  });
}

int stop_signal() {
  return g_signal.load();
}

void clear_stop_signal() {
  g_signal.store(0);
}

Interrupted::Interrupted(int signal)
    : signal_(signal), what_(std::string("interrupted by ") + (signal == SIGINT ? "SIGINT" : "SIGTERM")) {}

}  // namespace mil

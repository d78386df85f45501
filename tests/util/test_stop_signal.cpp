// Stop signals (SIGTERM, SIGINT) are taken by one thread of their own, never by a thread doing the step's
// arithmetic. oneDNN's JIT f32 GEMM kernels (up to v3.11.1) point the stack register into a heap buffer while
// they run; a signal handler running on such a thread writes its frame there and corrupts the heap
// (uxlfoundation/oneDNN#4845), which is what a spot reclaim's SIGTERM did in the middle of a product. Each
// test runs in a fresh process (a death test's re-executed child), as dsmil_train's main does: the handlers
// are installed before any other thread exists.
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "mil/model/onednn_matmul.hpp"
#include "mil/util/stop_signal.hpp"

namespace mil {
namespace {

bool blocked_here(int sig) {
  sigset_t mask;
  pthread_sigmask(SIG_BLOCK, nullptr, &mask);
  return sigismember(&mask, sig) == 1;
}

// Run in the child: every thread made after the handlers (OpenMP's, std::thread) blocks both signals, and a
// SIGTERM sent to the process is still recorded.
void check_masks_and_delivery() {
  install_stop_handlers();
  std::atomic<int> unblocked{0};
  at::parallel_for(0, 64, 1, [&](int64_t, int64_t) {
    if (!blocked_here(SIGTERM) || !blocked_here(SIGINT)) ++unblocked;
  });
  std::thread([&] {
    if (!blocked_here(SIGTERM)) ++unblocked;
  }).join();
  if (unblocked != 0 || !blocked_here(SIGTERM)) std::_Exit(2);
  kill(getpid(), SIGTERM);
  for (int i = 0; i < 2000 && stop_signal() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::_Exit(stop_signal() == SIGTERM ? 0 : 3);
}

TEST(StopSignals, AreBlockedOnComputeThreadsAndStillRecorded) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(check_masks_and_delivery(), testing::ExitedWithCode(0), "");
}

// Run in the child: float32 products (oneDNN's JIT kernels where the build has them) on every thread while
// another thread sends SIGTERM to the process every ~0.3 ms, forgetting each once it is recorded. The heap
// must survive (the products are checked and freed) and more than 100 signals must have been recorded.
void products_under_signals() {
  install_stop_handlers();
  torch::manual_seed(5);
  const torch::Tensor x = torch::randn({2000, 512});
  const torch::Tensor w = torch::randn({128, 512});
  const torch::Tensor expected = at::mm(x, w.t());
  std::atomic<bool> done{false};
  std::atomic<int> recorded{0};
  std::thread sender([&] {
    while (!done) {
      kill(getpid(), SIGTERM);
      for (int i = 0; i < 1000 && stop_signal() == 0; ++i) std::this_thread::sleep_for(std::chrono::microseconds(50));
      if (stop_signal() == SIGTERM) ++recorded;
      clear_stop_signal();  // else the next one would end the process, as a second SIGTERM does
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  OnednnMatmul onednn;
  torch::Tensor out = torch::empty({2000, 128});
  torch::Tensor grad = torch::empty({128, 512});
  double worst = 0;
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(3)) {
    if (OnednnMatmul::available()) {
      onednn.run(out, x, w.t(), {});
      onednn.run(grad, out.t(), x, {});  // the weight gradient's layout
    } else {
      at::mm_out(out, x, w.t());
    }
    worst = std::max(worst, (out - expected).abs().max().item<double>());
  }
  done = true;
  sender.join();
  std::_Exit(worst < 1e-2 && recorded > 100 ? 0 : 4);
}

TEST(StopSignals, NeverInterruptTheProducts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(products_under_signals(), testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace mil

#pragma once
// SIGTERM (a spot reclaim, `docker stop`, SageMaker's StopTrainingJob) and SIGINT (Ctrl-C) ask a job to
// stop: a thread of their own records the signal, and the trainer acts on it at its next safe point (after
// the current step), writes a checkpoint and ends with Interrupted. A second signal of the same kind ends the
// process at once, as it would without a handler. Every other thread blocks them, so that no signal frame is
// ever pushed onto a compute thread (see stop_signal.cpp).
#include <exception>
#include <string>

namespace mil {

// Installs the handling of SIGTERM and SIGINT. Call it first in main, before any other thread exists (the
// threads made later inherit the blocked signals). Idempotent.
void install_stop_handlers();

// The first stop signal received (SIGTERM or SIGINT), 0 when none has arrived.
int stop_signal();

// Tests only: forget a recorded signal.
void clear_stop_signal();

// Thrown once the checkpoint of an interrupted job is written. The binary exits with exit_code():
// 128 + the signal number, as shells report a process ended by that signal (143 for SIGTERM).
class Interrupted : public std::exception {
 public:
  explicit Interrupted(int signal);
  int signal() const { return signal_; }
  int exit_code() const { return 128 + signal_; }
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  int signal_;
  std::string what_;
};

}  // namespace mil

#include "mil/dist/mpi_communicator.hpp"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "mil/util/error.hpp"

namespace mil {
namespace {

void check_mpi(int rc, const char* call, int rank) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(rc, text, &length) != MPI_SUCCESS) std::snprintf(text, sizeof(text), "error code %d", rc);
  const std::string where = rank >= 0 ? " on rank " + std::to_string(rank) : " during initialisation";
  throw Error("", "", std::string(call) + " failed" + where + ": " + text);
}

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

constexpr int kQueryTag = 1;   // "which collective are you waiting in?" (payload: the asker's number)
constexpr int kAnswerTag = 2;  // (the asker's number, the answerer's number)

}  // namespace

class MpiCommunicator::Watchdog {
 public:
  Watchdog(int rank, int world) : rank_(rank), world_(world) {
    check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup", rank);
    check_mpi(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler", rank);
  }
  ~Watchdog() { MPI_Comm_free(&comm_); }

  double timeout_s = 1800;

  // Polls a started collective to completion. Ranks yield the core between polls (mpirun oversubscribed
  // runs several ranks per core) and, after a second, sleep: a rank waiting minutes for rank 0's
  // checkpoint need not spin.
  void wait(MPI_Request& request, const char* call) {
    ++collectives_;
    const Clock::time_point start = Clock::now();
    for (uint64_t spin = 0;; ++spin) {
      int done = 0;
      check_mpi(MPI_Test(&request, &done, MPI_STATUS_IGNORE), call, rank_);
      if (done) return;
      if (spin % 64 == 0) {
        answer_queries();
        const double waited = seconds_since(start);
        if (timeout_s > 0 && waited > timeout_s) timed_out(call);
        if (waited > 1.0) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
          continue;
        }
      }
      std::this_thread::yield();
    }
  }

 private:
  // Tells each rank that timed out which collective this one waits in.
  void answer_queries() {
    for (;;) {
      int pending = 0;
      MPI_Status status;
      check_mpi(MPI_Iprobe(MPI_ANY_SOURCE, kQueryTag, comm_, &pending, &status), "MPI_Iprobe", rank_);
      if (!pending) return;
      int64_t asker = 0;
      check_mpi(MPI_Recv(&asker, 1, MPI_INT64_T, status.MPI_SOURCE, kQueryTag, comm_, MPI_STATUS_IGNORE), "MPI_Recv",
                rank_);
      int64_t answer[2] = {asker, collectives_};
      MPI_Request r;
      check_mpi(MPI_Isend(answer, 2, MPI_INT64_T, status.MPI_SOURCE, kAnswerTag, comm_, &r), "MPI_Isend", rank_);
      check_mpi(MPI_Wait(&r, MPI_STATUS_IGNORE), "MPI_Wait", rank_);  // 16 bytes: sent eagerly
    }
  }

  // Asks every rank where it is, listens a few seconds, and throws naming the ranks that are not in this
  // collective. Queries go out non-blocking and are never waited for: a stopped rank must not block them.
  [[noreturn]] void timed_out(const char* call) {
    static int64_t query;  // the send buffer outlives this function: the job ends right after
    query = collectives_;
    for (int q = 0; q < world_; ++q) {
      if (q == rank_) continue;
      MPI_Request r;
      if (MPI_Isend(&query, 1, MPI_INT64_T, q, kQueryTag, comm_, &r) == MPI_SUCCESS) MPI_Request_free(&r);
    }
    std::vector<int64_t> at(static_cast<size_t>(world_), -1);  // each rank's collective number; -1 = silent
    at[static_cast<size_t>(rank_)] = collectives_;
    const Clock::time_point asked = Clock::now();
    int answered = 1;
    while (answered < world_ && seconds_since(asked) < std::min(5.0, timeout_s)) {
      answer_queries();
      int pending = 0;
      MPI_Status status;
      if (MPI_Iprobe(MPI_ANY_SOURCE, kAnswerTag, comm_, &pending, &status) != MPI_SUCCESS) break;
      if (!pending) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      int64_t answer[2];
      if (MPI_Recv(answer, 2, MPI_INT64_T, status.MPI_SOURCE, kAnswerTag, comm_, MPI_STATUS_IGNORE) != MPI_SUCCESS)
        break;
      if (answer[0] == collectives_ && at[static_cast<size_t>(status.MPI_SOURCE)] < 0) {
        at[static_cast<size_t>(status.MPI_SOURCE)] = answer[1];
        ++answered;
      }
    }
    std::string absent, elsewhere;
    for (int q = 0; q < world_; ++q) {
      const int64_t n = at[static_cast<size_t>(q)];
      if (n < 0) absent += (absent.empty() ? "" : ", ") + std::to_string(q);
      if (n >= 0 && n != collectives_) {
        elsewhere += "; rank " + std::to_string(q) + " waits in collective #" + std::to_string(n) + " instead";
      }
    }
    char limit[32];
    std::snprintf(limit, sizeof(limit), "%g", timeout_s);
    throw Error("", call,
                "collective #" + std::to_string(collectives_) + " did not complete within " + limit +
                    " s (--collective-timeout): " +
                    (absent.empty() ? "every rank is waiting" : "rank(s) " + absent + " did not arrive") +
                    " (stopped, hung, or busy for longer than the timeout)" + elsewhere);
  }

  int rank_;
  int world_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int64_t collectives_ = 0;  // started so far: the same count on every rank
};

namespace {

// Every MPI call goes through this, so a failure names the call and the rank.
#define MIL_MPI(fn, ...) check_mpi(fn(__VA_ARGS__), #fn, rank_)

// The MPI type of a tensor a collective can work on in place: CPU, contiguous, float32 or float64,
// with an element count MPI's int counts can hold.
MPI_Datatype mpi_type_of(const torch::Tensor& t, const char* op) {
  const auto fail = [&](const std::string& why) { throw Error("", op, why); };
  if (!t.defined()) fail("undefined tensor");
  if (!t.device().is_cpu()) fail("needs a CPU tensor, got one on " + t.device().str());
  if (!t.is_contiguous()) fail("needs a contiguous tensor");
  if (t.numel() > std::numeric_limits<int>::max()) fail(std::to_string(t.numel()) + " elements is more than MPI's int");
  if (t.scalar_type() == torch::kFloat) return MPI_FLOAT;
  if (t.scalar_type() == torch::kDouble) return MPI_DOUBLE;
  fail(std::string("needs float32 or float64, got ") + c10::toString(t.scalar_type()));
  return MPI_DATATYPE_NULL;  // not reached
}

}  // namespace

MpiCommunicator::MpiCommunicator() {
  int initialized = 0;
  MIL_MPI(MPI_Initialized, &initialized);
  if (initialized) throw Error("", "MpiCommunicator", "MPI is already initialised: one communicator per process");
  int provided = 0;
  MIL_MPI(MPI_Init_thread, nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  // The default handler aborts the job on any error; returned codes let check_mpi name the call.
  MIL_MPI(MPI_Comm_set_errhandler, MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MIL_MPI(MPI_Comm_rank, MPI_COMM_WORLD, &rank_);
  MIL_MPI(MPI_Comm_size, MPI_COMM_WORLD, &world_size_);
  if (provided < MPI_THREAD_FUNNELED) {
    throw Error("", "MPI_Init_thread",
                "rank " + std::to_string(rank_) + ": the MPI library offers thread level " + std::to_string(provided) +
                    ", below MPI_THREAD_FUNNELED");
  }
  // The ranks sharing this host's memory: which GPU is ours, and how many ranks share the cores.
  MPI_Comm local = MPI_COMM_NULL;
  MIL_MPI(MPI_Comm_split_type, MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local);
  MIL_MPI(MPI_Comm_rank, local, &local_rank_);
  MIL_MPI(MPI_Comm_size, local, &local_size_);
  MIL_MPI(MPI_Comm_free, &local);
  watchdog_ = std::make_unique<Watchdog>(rank_, world_size_);
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) {
    watchdog_.reset();  // frees its communicator while MPI still runs
    MPI_Finalize();
  }  // nothing useful to do with an error on the way out
}

void MpiCommunicator::allreduce_sum(torch::Tensor& t) {
  const MPI_Datatype type = mpi_type_of(t, "allreduce_sum");
  MPI_Request r;
  MIL_MPI(MPI_Iallreduce, MPI_IN_PLACE, t.data_ptr(), static_cast<int>(t.numel()), type, MPI_SUM, MPI_COMM_WORLD, &r);
  watchdog_->wait(r, "MPI_Allreduce");
}

void MpiCommunicator::broadcast(torch::Tensor& t, int root) {
  const MPI_Datatype type = mpi_type_of(t, "broadcast");
  MPI_Request r;
  MIL_MPI(MPI_Ibcast, t.data_ptr(), static_cast<int>(t.numel()), type, root, MPI_COMM_WORLD, &r);
  watchdog_->wait(r, "MPI_Bcast");
}

int64_t MpiCommunicator::allreduce_max(int64_t value) {
  MPI_Request r;
  MIL_MPI(MPI_Iallreduce, MPI_IN_PLACE, &value, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD, &r);
  watchdog_->wait(r, "MPI_Allreduce");
  return value;
}

torch::Tensor MpiCommunicator::allgather(const torch::Tensor& t) {
  const MPI_Datatype type = mpi_type_of(t, "allgather");
  if (t.dim() != 1) throw Error("", "allgather", "needs a 1-D tensor, got " + std::to_string(t.dim()) + "-D");
  const int count = static_cast<int>(t.numel());
  std::vector<int> counts(static_cast<size_t>(world_size_));
  MPI_Request r;
  MIL_MPI(MPI_Iallgather, &count, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD, &r);
  watchdog_->wait(r, "MPI_Allgather");
  std::vector<int> offsets(counts.size());
  int64_t total = 0;
  for (size_t q = 0; q < counts.size(); ++q) {
    offsets[q] = static_cast<int>(total);
    total += counts[q];
    if (total > std::numeric_limits<int>::max()) throw Error("", "allgather", "more elements than MPI's int");
  }
  torch::Tensor out = torch::empty({total}, t.options());
  MIL_MPI(MPI_Iallgatherv, t.data_ptr(), count, type, out.data_ptr(), counts.data(), offsets.data(), type,
          MPI_COMM_WORLD, &r);
  watchdog_->wait(r, "MPI_Allgatherv");
  return out;
}

void MpiCommunicator::broadcast_bytes(std::string& bytes, int root) {
  int64_t size = static_cast<int64_t>(bytes.size());
  MPI_Request r;
  MIL_MPI(MPI_Ibcast, &size, 1, MPI_INT64_T, root, MPI_COMM_WORLD, &r);
  watchdog_->wait(r, "MPI_Bcast");
  bytes.resize(static_cast<size_t>(size));
  // In chunks: MPI counts are ints, and a checkpoint of a large model may pass 2 GiB.
  constexpr int64_t kChunk = int64_t{1} << 30;
  for (int64_t done = 0; done < size; done += kChunk) {
    const int n = static_cast<int>(std::min(kChunk, size - done));
    MIL_MPI(MPI_Ibcast, bytes.data() + done, n, MPI_BYTE, root, MPI_COMM_WORLD, &r);
    watchdog_->wait(r, "MPI_Bcast");
  }
}

void MpiCommunicator::barrier() {
  MPI_Request r;
  MIL_MPI(MPI_Ibarrier, MPI_COMM_WORLD, &r);
  watchdog_->wait(r, "MPI_Barrier");
}

void MpiCommunicator::set_collective_timeout(double seconds) {
  watchdog_->timeout_s = seconds;
}

void MpiCommunicator::abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort does not return; this keeps the [[noreturn]] promise if it ever did
}

}  // namespace mil

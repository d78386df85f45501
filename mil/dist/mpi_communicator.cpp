#include "mil/dist/mpi_communicator.hpp"

#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
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
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();  // nothing useful to do with an error on the way out
}

void MpiCommunicator::allreduce_sum(torch::Tensor& t) {
  const MPI_Datatype type = mpi_type_of(t, "allreduce_sum");
  MIL_MPI(MPI_Allreduce, MPI_IN_PLACE, t.data_ptr(), static_cast<int>(t.numel()), type, MPI_SUM, MPI_COMM_WORLD);
}

void MpiCommunicator::broadcast(torch::Tensor& t, int root) {
  const MPI_Datatype type = mpi_type_of(t, "broadcast");
  MIL_MPI(MPI_Bcast, t.data_ptr(), static_cast<int>(t.numel()), type, root, MPI_COMM_WORLD);
}

int64_t MpiCommunicator::allreduce_max(int64_t value) {
  MIL_MPI(MPI_Allreduce, MPI_IN_PLACE, &value, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
  return value;
}

torch::Tensor MpiCommunicator::allgather(const torch::Tensor& t) {
  const MPI_Datatype type = mpi_type_of(t, "allgather");
  if (t.dim() != 1) throw Error("", "allgather", "needs a 1-D tensor, got " + std::to_string(t.dim()) + "-D");
  const int count = static_cast<int>(t.numel());
  std::vector<int> counts(static_cast<size_t>(world_size_));
  MIL_MPI(MPI_Allgather, &count, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD);
  std::vector<int> offsets(counts.size());
  int64_t total = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    offsets[r] = static_cast<int>(total);
    total += counts[r];
    if (total > std::numeric_limits<int>::max()) throw Error("", "allgather", "more elements than MPI's int");
  }
  torch::Tensor out = torch::empty({total}, t.options());
  MIL_MPI(MPI_Allgatherv, t.data_ptr(), count, type, out.data_ptr(), counts.data(), offsets.data(), type,
          MPI_COMM_WORLD);
  return out;
}

void MpiCommunicator::broadcast_bytes(std::string& bytes, int root) {
  int64_t size = static_cast<int64_t>(bytes.size());
  MIL_MPI(MPI_Bcast, &size, 1, MPI_INT64_T, root, MPI_COMM_WORLD);
  bytes.resize(static_cast<size_t>(size));
  // In chunks: MPI counts are ints, and a checkpoint of a large model may pass 2 GiB.
  constexpr int64_t kChunk = int64_t{1} << 30;
  for (int64_t done = 0; done < size; done += kChunk) {
    const int n = static_cast<int>(std::min(kChunk, size - done));
    MIL_MPI(MPI_Bcast, bytes.data() + done, n, MPI_BYTE, root, MPI_COMM_WORLD);
  }
}

void MpiCommunicator::barrier() {
  MIL_MPI(MPI_Barrier, MPI_COMM_WORLD);
}

void MpiCommunicator::abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort does not return; this keeps the [[noreturn]] promise if it ever did
}

}  // namespace mil

#include "mil/dist/c10d_communicator.hpp"

#include <torch/version.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "mil/dist/mpi_communicator.hpp"
#include "mil/util/device.hpp"
#include "mil/util/error.hpp"

#if defined(DSMIL_HAVE_C10D_GLOO) || defined(DSMIL_HAVE_C10D_NCCL)
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#ifdef DSMIL_HAVE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef DSMIL_HAVE_C10D_NCCL
#include <c10/cuda/CUDAFunctions.h>

#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace mil {

bool c10d_backend_available(C10dBackend backend) {
#ifdef DSMIL_HAVE_C10D_GLOO
  if (backend == C10dBackend::kGloo) return true;
#endif
#ifdef DSMIL_HAVE_C10D_NCCL
  if (backend == C10dBackend::kNccl) return true;
#endif
  (void)backend;
  return false;
}

std::string c10d_backend_name(C10dBackend backend) {
  return backend == C10dBackend::kGloo ? "gloo" : "nccl";
}

#if defined(DSMIL_HAVE_C10D_GLOO) || defined(DSMIL_HAVE_C10D_NCCL)

// libtorch 2.x split the collectives out of ProcessGroup into Backend, which Gloo and NCCL implement; in
// 1.13 they implement ProcessGroup itself. The calls (vectors of tensors, options structs, Work::wait) match.
#if TORCH_VERSION_MAJOR >= 2
using C10dGroup = c10d::Backend;
#else
using C10dGroup = c10d::ProcessGroup;
#endif

struct C10dCommunicator::Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<C10dGroup> pg;
};

namespace {

// c10d's timeouts: `seconds` (0 = none) as milliseconds, "none" being a year.
std::chrono::milliseconds timeout_ms(double seconds) {
  const double s = seconds > 0 ? seconds : 365.0 * 24 * 3600;
  return std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
}

// Runs one step of the set-up on this rank, then the ranks agree over MPI whether it worked everywhere: a
// rank that failed throws its own error, the others one naming the first rank that failed. Without the
// agreement the others would go on to wait for that rank in the store until its timeout.
void on_every_rank(MpiCommunicator& mpi, const std::string& object, const std::string& step,
                   const std::function<void()>& fn) {
  std::string error;
  try {
    fn();
  } catch (const Error& e) {
    error = e.what();
  } catch (const std::exception& e) {
    error = step + " failed: " + e.what();
  }
  const int64_t w = mpi.world_size();
  // The lowest failing rank: the largest of (w - rank) over the failing ones.
  const int64_t first_failed = w - mpi.allreduce_max(error.empty() ? 0 : w - mpi.rank());
  if (!error.empty()) throw Error("", object, error);
  if (first_failed < w) {
    throw Error("", object, step + " failed on rank " + std::to_string(first_failed) + " (see its error)");
  }
}

// Rank 0 opens the store on a free port (port 0: the kernel picks it, no clash between jobs on one host)
// and broadcasts host:port over MPI; the others connect. A job on one host uses the loopback address,
// which needs no name resolution; across hosts, rank 0's host name (SageMaker's algo-N resolve).
c10::intrusive_ptr<c10d::Store> rendezvous(MpiCommunicator& mpi, const std::string& object, double timeout_s,
                                           std::string* address) {
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10d::TCPStoreOptions opts;
  opts.numWorkers = static_cast<size_t>(mpi.world_size());
  opts.waitWorkers = false;  // the others learn the port only after this constructor returns
  opts.timeout = timeout_ms(std::min(timeout_s > 0 ? timeout_s : 300.0, 300.0));
  on_every_rank(mpi, object, "opening the store on rank 0", [&] {
    if (!mpi.is_main()) return;
    std::string host = "127.0.0.1";
    if (mpi.local_size() != mpi.world_size()) {
      char name[256] = {};
      if (gethostname(name, sizeof(name) - 1) != 0) throw Error("", object, "gethostname failed: " + errno_text());
      host = name;
    }
    opts.port = 0;
    opts.isServer = true;
    store = c10::make_intrusive<c10d::TCPStore>(host, opts);
    *address = host + ":" + std::to_string(store->getPort());
  });
  mpi.broadcast_bytes(*address, 0);
  on_every_rank(mpi, object, "connecting to the store at " + *address, [&] {
    if (mpi.is_main()) return;
    const size_t colon = address->rfind(':');
    opts.port = static_cast<uint16_t>(std::stoi(address->substr(colon + 1)));
    opts.isServer = false;
    store = c10::make_intrusive<c10d::TCPStore>(address->substr(0, colon), opts);
  });
  return store;
}

c10::intrusive_ptr<C10dGroup> make_group(C10dBackend backend, const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                         int world, const torch::Device& device, bool one_host, double timeout_s) {
#ifdef DSMIL_HAVE_C10D_GLOO
  if (backend == C10dBackend::kGloo) {
    auto opts = c10d::ProcessGroupGloo::Options::create();
    opts->timeout = timeout_ms(timeout_s);
    // One host: loopback, as the store. Several: Gloo's default, the interface this host's name resolves to.
    opts->devices.push_back(one_host ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                     : c10d::ProcessGroupGloo::createDefaultDevice());
    return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, opts);
  }
#endif
#ifdef DSMIL_HAVE_C10D_NCCL
  if (backend == C10dBackend::kNccl) {
    if (!device.is_cuda()) throw Error("", "--comm nccl", "needs a GPU, got device " + device.str());
    c10::cuda::set_device(device.index());  // NCCL's communicator and streams on this rank's GPU
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = timeout_ms(timeout_s);
    auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, opts);
    pg->setBoundDeviceId(device);  // one GPU per rank: communicators made eagerly on it, not guessed
    return pg;
  }
#endif
  (void)store, (void)rank, (void)world, (void)device, (void)one_host, (void)timeout_s;
  throw Error("", "--comm " + c10d_backend_name(backend),
              "this build of dsmil has no c10d " + c10d_backend_name(backend));
}

}  // namespace

C10dCommunicator::C10dCommunicator(std::unique_ptr<MpiCommunicator> mpi, C10dBackend backend,
                                   const std::string& device_spec, double timeout_s)
    : mpi_(std::move(mpi)), backend_(backend), group_(std::make_unique<Group>()) {
  const std::string object = "--comm " + c10d_backend_name(backend);
  if (!c10d_backend_available(backend)) {
    throw Error("", object,
                "this build of dsmil has no c10d " + c10d_backend_name(backend) + " (see the CMake configure log)");
  }
  const int r = mpi_->rank(), w = mpi_->world_size();
  if (backend == C10dBackend::kNccl) {
    // The trainer's rule (resolve_device), so NCCL and the model share the GPU; agreed on, since hosts may
    // differ in GPUs and a rank that failed alone would leave the others waiting in the store.
    on_every_rank(*mpi_, object, "choosing this rank's GPU",
                  [&] { device_ = resolve_device(device_spec, mpi_->local_rank(), mpi_->local_size()); });
  }
  std::string address;  // host:port of rank 0's store
  group_->store = rendezvous(*mpi_, object, timeout_s, &address);
  const bool one_host = address.rfind("127.0.0.1:", 0) == 0;
  on_every_rank(*mpi_, object, "setting up the process group",
                [&] { group_->pg = make_group(backend, group_->store, r, w, device_, one_host, timeout_s); });
  barrier();  // every rank connected before the first real collective
  description_ = "c10d " + c10d_backend_name(backend) + " (store " + address + ", device " + device_.str() + ")";
}

namespace {

// The interface's contract, checked as MpiCommunicator checks it, so both fail alike on a bad tensor.
void check_tensor(const torch::Tensor& t, const char* op) {
  const auto fail = [&](const std::string& why) { throw Error("", op, why); };
  if (!t.defined()) fail("undefined tensor");
  if (!t.is_contiguous()) fail("needs a contiguous tensor");
  if (t.scalar_type() != torch::kFloat && t.scalar_type() != torch::kDouble)
    fail(std::string("needs float32 or float64, got ") + c10::toString(t.scalar_type()));
}

// Runs one collective; c10d's errors (c10::Error, Gloo's or NCCL's) become a mil::Error naming the operation
// and the rank, as MpiCommunicator names the MPI call. wait() blocks the host for Gloo; for NCCL it orders
// the current CUDA stream after the collective, and a host read of the result (item(), a copy to the CPU)
// waits for it.
void run(const char* op, int rank, const std::function<c10::intrusive_ptr<c10d::Work>()>& start) {
  try {
    start()->wait();
  } catch (const std::exception& e) {
    throw Error("", "", std::string("c10d ") + op + " failed on rank " + std::to_string(rank) + ": " + e.what());
  }
}

// The tensor the group works on: `t` itself when it is on the group's device, else a copy there.
torch::Tensor staged(const torch::Tensor& t, const torch::Device& device) {
  return t.device() == device ? t : t.to(device);
}

}  // namespace

void C10dCommunicator::allreduce_sum(torch::Tensor& t) {
  check_tensor(t, "allreduce_sum");
  std::vector<torch::Tensor> v = {staged(t, device_)};
  c10d::AllreduceOptions opts;
  opts.reduceOp = c10d::ReduceOp::SUM;
  run("allreduce_sum", rank(), [&] { return group_->pg->allreduce(v, opts); });
  if (!v[0].is_same(t)) t.copy_(v[0]);
}

void C10dCommunicator::broadcast(torch::Tensor& t, int root) {
  check_tensor(t, "broadcast");
  std::vector<torch::Tensor> v = {staged(t, device_)};
  c10d::BroadcastOptions opts;
  opts.rootRank = root;
  run("broadcast", rank(), [&] { return group_->pg->broadcast(v, opts); });
  if (!v[0].is_same(t)) t.copy_(v[0]);
}

int64_t C10dCommunicator::allreduce_max(int64_t value) {
  std::vector<torch::Tensor> v = {torch::full({1}, value, torch::dtype(torch::kLong).device(device_))};
  c10d::AllreduceOptions opts;
  opts.reduceOp = c10d::ReduceOp::MAX;
  run("allreduce_max", rank(), [&] { return group_->pg->allreduce(v, opts); });
  return v[0].item<int64_t>();
}

// c10d's allgather wants equal lengths: gather the lengths, pad every rank's part to the longest, gather,
// and keep each rank's own length.
torch::Tensor C10dCommunicator::allgather(const torch::Tensor& t) {
  check_tensor(t, "allgather");
  if (t.dim() != 1) throw Error("", "allgather", "needs a 1-D tensor, got " + std::to_string(t.dim()) + "-D");
  const auto w = static_cast<size_t>(world_size());
  const auto gather = [&](const torch::Tensor& mine) {
    std::vector<torch::Tensor> in = {mine};
    std::vector<std::vector<torch::Tensor>> out(1);
    for (size_t r = 0; r < w; ++r) out[0].push_back(torch::empty_like(mine));
    run("allgather", rank(), [&] { return group_->pg->allgather(out, in); });
    return out[0];
  };
  const torch::Tensor counts =
      torch::cat(gather(torch::full({1}, t.numel(), torch::dtype(torch::kLong).device(device_)))).cpu();
  const std::vector<int64_t> lengths(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + w);
  const int64_t longest = *std::max_element(lengths.begin(), lengths.end());
  if (longest == 0) return torch::empty({0}, t.options());  // nothing to send (Gloo rejects empty buffers)
  torch::Tensor padded = torch::zeros({longest}, t.options().device(device_));
  padded.narrow(0, 0, t.numel()).copy_(t);
  const std::vector<torch::Tensor> parts = gather(padded);
  std::vector<torch::Tensor> kept;
  for (size_t r = 0; r < w; ++r) kept.push_back(parts[r].narrow(0, 0, lengths[r]));
  return torch::cat(kept).to(t.device());
}

void C10dCommunicator::broadcast_bytes(std::string& bytes, int root) {
  std::vector<torch::Tensor> size = {
      torch::full({1}, static_cast<int64_t>(bytes.size()), torch::dtype(torch::kLong).device(device_))};
  c10d::BroadcastOptions opts;
  opts.rootRank = root;
  run("broadcast_bytes", rank(), [&] { return group_->pg->broadcast(size, opts); });
  const int64_t n = size[0].item<int64_t>();
  bytes.resize(static_cast<size_t>(n));
  if (n == 0) return;
  // Rank `root`'s bytes, viewed as a uint8 tensor (no copy on the CPU), staged to the group's device.
  const torch::Tensor host = torch::from_blob(bytes.data(), {n}, torch::kUInt8);
  std::vector<torch::Tensor> v = {staged(host, device_)};
  run("broadcast_bytes", rank(), [&] { return group_->pg->broadcast(v, opts); });
  if (!v[0].is_same(host)) host.copy_(v[0]);
}

void C10dCommunicator::barrier() {
  c10d::BarrierOptions opts;
  if (device_.is_cuda()) opts.device_ids = {device_.index()};  // not NCCL's guess from the global rank
  run("barrier", rank(), [&] { return group_->pg->barrier(opts); });
}

#else  // no c10d back end in this build

struct C10dCommunicator::Group {};

C10dCommunicator::C10dCommunicator(std::unique_ptr<MpiCommunicator> mpi, C10dBackend backend,
                                   const std::string& /*device_spec*/, double /*timeout_s*/)
    : mpi_(std::move(mpi)), backend_(backend) {
  const std::string name = c10d_backend_name(backend);
  throw Error("", "--comm " + name, "this build of dsmil has no c10d " + name + " (see the CMake configure log)");
}

// Never reached: the constructor above throws. They exist because the class must be complete.
void C10dCommunicator::allreduce_sum(torch::Tensor&) {}
void C10dCommunicator::broadcast(torch::Tensor&, int) {}
int64_t C10dCommunicator::allreduce_max(int64_t value) {
  return value;
}
torch::Tensor C10dCommunicator::allgather(const torch::Tensor& t) {
  return t;
}
void C10dCommunicator::broadcast_bytes(std::string&, int) {}
void C10dCommunicator::barrier() {}

#endif

C10dCommunicator::~C10dCommunicator() = default;

int C10dCommunicator::rank() const {
  return mpi_->rank();
}
int C10dCommunicator::world_size() const {
  return mpi_->world_size();
}
int C10dCommunicator::local_rank() const {
  return mpi_->local_rank();
}
int C10dCommunicator::local_size() const {
  return mpi_->local_size();
}

void C10dCommunicator::abort(int code) {
  mpi_->abort(code);  // MPI_Abort ends every rank, wherever c10d is
}

}  // namespace mil

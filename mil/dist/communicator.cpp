#include "mil/dist/communicator.hpp"

#include <cstdlib>

#include "mil/dist/c10d_communicator.hpp"
#include "mil/dist/mpi_communicator.hpp"
#include "mil/util/device.hpp"
#include "mil/util/error.hpp"

namespace mil {

void LocalCommunicator::abort(int code) {
  std::exit(code);
}

Transport choose_transport(const std::string& kind, const std::string& device) {
  const auto need = [&](C10dBackend backend) {
    if (!c10d_backend_available(backend)) {
      const std::string name = c10d_backend_name(backend);
      throw Error("", "--comm " + name,
                  "this build of dsmil has no c10d " + name +
                      (backend == C10dBackend::kGloo
                           ? " (Debian's libtorch with libgloo-dev; the torch wheel's CUDA build has no Gloo headers)"
                           : " (a CUDA libtorch with NCCL: scripts/build_cuda.sh)") +
                      "; use --comm mpi");
    }
  };
  if (kind == "mpi") return Transport::kMpi;
  if (kind == "auto") {
    return device_is_cuda(device) && c10d_backend_available(C10dBackend::kNccl) ? Transport::kNccl : Transport::kMpi;
  }
  if (kind == "gloo") {
    need(C10dBackend::kGloo);
    return Transport::kGloo;
  }
  if (kind == "nccl") {
    need(C10dBackend::kNccl);
    // Checked here, before MPI and the store: without it the ranks would wait for each other in the store.
    if (device == "cpu") throw Error("", "--comm nccl", "needs a GPU, but --device is cpu; use --comm mpi or gloo");
    if (!device_is_cuda(device)) {
      throw Error("", "--comm nccl", "needs a GPU, and CUDA sees none on this machine; use --comm mpi or gloo");
    }
    return Transport::kNccl;
  }
  throw Error("", "--comm", "'" + kind + "': expected auto, mpi, gloo or nccl");
}

std::unique_ptr<Communicator> make_communicator(const CommOptions& options) {
  const Transport transport = choose_transport(options.kind, options.device);
  if (std::getenv("OMPI_COMM_WORLD_SIZE") == nullptr) return std::make_unique<LocalCommunicator>();
  auto mpi = std::make_unique<MpiCommunicator>();
  mpi->set_collective_timeout(options.collective_timeout);
  if (transport == Transport::kMpi) return mpi;
  const C10dBackend backend = transport == Transport::kGloo ? C10dBackend::kGloo : C10dBackend::kNccl;
  return std::make_unique<C10dCommunicator>(std::move(mpi), backend, options.device, options.collective_timeout);
}

}  // namespace mil

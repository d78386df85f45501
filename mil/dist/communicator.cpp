#include "mil/dist/communicator.hpp"

#include <cstdlib>

#include "mil/dist/mpi_communicator.hpp"

namespace mil {

void LocalCommunicator::abort(int code) {
  std::exit(code);
}

std::unique_ptr<Communicator> make_communicator() {
  if (std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr) return std::make_unique<MpiCommunicator>();
  return std::make_unique<LocalCommunicator>();
}

}  // namespace mil

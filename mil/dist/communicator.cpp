#include "mil/dist/communicator.hpp"

#include <cstdlib>

namespace mil {

void LocalCommunicator::abort(int code) {
  std::exit(code);
}

}  // namespace mil

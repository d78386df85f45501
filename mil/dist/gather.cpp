#include "mil/dist/gather.hpp"

#include <string>

#include "mil/util/check.hpp"

namespace mil {

torch::Tensor gather_rows(Communicator& comm, const std::vector<double>& mine, int64_t width, int64_t total_rows,
                          const std::function<std::vector<int64_t>(int)>& positions_of) {
  const torch::Tensor all = comm.allgather(torch::tensor(mine, torch::kDouble)).view({-1, width});
  std::vector<int64_t> positions;  // of the gathered rows, which come in rank order
  for (int q = 0; q < comm.world_size(); ++q) {
    const std::vector<int64_t> p = positions_of(q);
    positions.insert(positions.end(), p.begin(), p.end());
  }
  MIL_CHECK(static_cast<int64_t>(positions.size()) == total_rows && all.size(0) == total_rows,
            "gather_rows: expected " + std::to_string(total_rows) + " rows, got " + std::to_string(all.size(0)));
  return torch::empty({total_rows, width}, torch::kDouble).index_copy_(0, torch::tensor(positions), all);
}

}  // namespace mil

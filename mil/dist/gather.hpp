#pragma once
// Collecting per-rank results into one table that every rank holds.
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "mil/dist/communicator.hpp"

namespace mil {

// Every rank's rows of `width` float64 values, as one [total_rows, width] tensor on every rank: rank q's
// i-th row lands at row positions_of(q)[i]. Every rank knows every rank's positions, so only values travel.
// On one rank it is a reshape. The positions of all ranks must cover total_rows rows (an internal check).
torch::Tensor gather_rows(Communicator& comm, const std::vector<double>& mine, int64_t width, int64_t total_rows,
                          const std::function<std::vector<int64_t>(int)>& positions_of);

}  // namespace mil

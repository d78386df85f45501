#pragma once
// Keeping every rank's copy of the model identical: start from rank 0's weights, and before each
// optimiser step replace every rank's gradients by the average over the step's bags. Each is one
// collective on one flat buffer, since one large message costs far less than a message per tensor.
#include <torch/torch.h>

#include <vector>

#include "mil/dist/communicator.hpp"

namespace mil {

// Every rank's parameters become rank `root`'s. Parameters share one dtype and one device.
void broadcast_parameters(const std::vector<torch::Tensor>& params, Communicator& comm, int root);

// Each parameter's gradient becomes (sum of its gradient over ranks) / bags_per_step, where every rank has
// accumulated the gradients of its own bags of the step. A parameter without a gradient counts as zeros and
// gets one, so every rank's optimiser updates the same parameters. Throws mil::Error if bags_per_step < 1.
// `flags`, when given, are small per-rank counts summed over ranks in the same all-reduce (not divided):
// how the ranks agree on a stop request or a checkpoint at every step without a message of their own.
void average_gradients(const std::vector<torch::Tensor>& params, Communicator& comm, int64_t bags_per_step,
                       std::vector<float>* flags = nullptr);

// The flat-buffer form: `buffer` holds n_grad gradient floats (a FlatParameters gradient buffer) and at
// least flags->size() spare floats after them. One all-reduce sums the gradients over ranks in place (no
// division: the optimiser folds the mean over the step's bags into its pass) with the flags riding in the
// spare floats; the flags are replaced by their sums. Throws mil::Error if the spare floats are too few.
// A buffer on a device the communicator reduces on (NCCL's GPU) is reduced there in place; elsewhere (MPI or
// Gloo with a GPU buffer) it goes through a host copy and back.
void sum_flat_gradients(torch::Tensor& buffer, int64_t n_grad, Communicator& comm, std::vector<float>* flags);

}  // namespace mil

#include "mil/train/train_step.hpp"

#include "mil/dist/parameter_sync.hpp"

namespace mil {

TrainStep::TrainStep(DsmilNetImpl& net, const OptimizerConfig& cfg, Precision precision)
    : net_(net), flat_(net), step_(flat_, precision), packed_(flat_), adam_(flat_.values(), flat_.grads(), cfg) {
  if (precision != Precision::kFloat32) fp32_step_ = std::make_unique<DsmilStep>(flat_, Precision::kFloat32);
}

void TrainStep::finish(Communicator& comm, int64_t bags_per_step, std::vector<float>* flags) {
  if (comm.world_size() > 1) sum_flat_gradients(flat_.grads_with_spare(), flat_.numel(), comm, flags);
  adam_.step(bags_per_step);
}

void TrainStep::load_state(const std::string& bytes, const std::string& source) {
  adam_.load_state(bytes, source, net_.parameters());
}

}  // namespace mil

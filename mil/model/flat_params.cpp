#include "mil/model/flat_params.hpp"

#include <map>
#include <string>
#include <vector>

#include "mil/util/error.hpp"

namespace mil {
namespace {

// Where one parameter lives in the flat buffer.
struct Slot {
  std::string key;
  torch::Tensor DsmilTensors::*view;  // the combined view it belongs to
  int64_t offset = 0;                 // in floats, from the start of the buffer
};

using BufferOrder = std::vector<std::pair<std::string, torch::Tensor DsmilTensors::*>>;

// The parameters' keys in buffer order, each with the combined view it starts (nullptr: it continues the
// previous one): the instance classifier's rows and q's first layer's are one [C + 128, D] matrix.
BufferOrder buffer_order(const ModelConfig& cfg) {
  const std::string q1 = cfg.nonlinear_q ? "b_classifier.q.0." : "b_classifier.q.";
  BufferOrder order = {{"i_classifier.fc.0.weight", &DsmilTensors::w_in},
                       {q1 + "weight", nullptr},
                       {"i_classifier.fc.0.bias", &DsmilTensors::b_in},
                       {q1 + "bias", nullptr}};
  if (cfg.nonlinear_q) {
    order.push_back({"b_classifier.q.2.weight", &DsmilTensors::w_q2});
    order.push_back({"b_classifier.q.2.bias", &DsmilTensors::b_q2});
  }
  if (cfg.passing_v) {
    order.push_back({"b_classifier.v.1.weight", &DsmilTensors::w_v});
    order.push_back({"b_classifier.v.1.bias", &DsmilTensors::b_v});
  }
  order.push_back({"b_classifier.fcc.weight", &DsmilTensors::w_bag});
  order.push_back({"b_classifier.fcc.bias", &DsmilTensors::b_bag});
  return order;
}

// The combined views the step works with, of `buffer` (the values or the gradients).
DsmilTensors combined_views(const torch::Tensor& buffer, const std::vector<Slot>& slots, const ModelConfig& cfg) {
  const int64_t d = cfg.feature_dim;
  const int64_t c = cfg.num_classes;
  const int64_t h = ModelConfig::kQueryDim;
  DsmilTensors views;
  const auto bind = [&](torch::Tensor DsmilTensors::*view, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t e : shape) n *= e;
    for (const Slot& s : slots) {
      if (s.view == view) views.*view = buffer.narrow(0, s.offset, n).view(shape);
    }
  };
  bind(&DsmilTensors::w_in, {c + h, d});
  bind(&DsmilTensors::b_in, {c + h});
  if (cfg.nonlinear_q) {
    bind(&DsmilTensors::w_q2, {h, h});
    bind(&DsmilTensors::b_q2, {h});
  }
  if (cfg.passing_v) {
    bind(&DsmilTensors::w_v, {d, d});
    bind(&DsmilTensors::b_v, {d});
  }
  bind(&DsmilTensors::w_bag, {c, c * d});
  bind(&DsmilTensors::b_bag, {c});
  return views;
}

}  // namespace

FlatParameters::FlatParameters(DsmilNetImpl& net) : cfg_(net.config()) {
  std::map<std::string, torch::Tensor> params;
  for (const auto& item : net.named_parameters()) params[item.key()] = item.value();
  const BufferOrder order = buffer_order(cfg_);
  if (order.size() != params.size()) {
    throw Error("", "FlatParameters",
                "the model has " + std::to_string(params.size()) + " parameters, expected " +
                    std::to_string(order.size()) + " for " + cfg_.describe());
  }

  std::vector<Slot> slots;
  for (const auto& [key, view] : order) {
    const auto it = params.find(key);
    if (it == params.end()) throw Error("", key, "is not a parameter of the model (" + cfg_.describe() + ")");
    slots.push_back({key, view, numel_});
    numel_ += it->second.numel();
  }
  const torch::Tensor& first = params.begin()->second;
  values_ = torch::empty({numel_}, first.options().requires_grad(false));
  grads_ = torch::zeros({numel_ + kSpareSlots}, values_.options());
  torch::NoGradGuard no_grad;
  for (const Slot& s : slots) {  // the parameters become views of the buffer, their values moved in
    torch::Tensor& p = params.at(s.key);
    torch::Tensor view = values_.narrow(0, s.offset, p.numel()).view(p.sizes());
    view.copy_(p.detach());
    p.set_data(view);
  }
  value_views_ = combined_views(values_, slots, cfg_);
  grad_views_ = combined_views(grads_, slots, cfg_);
}

void FlatParameters::zero_grads() {
  grads_.zero_();
  grads_zero_ = true;
  scratch_pending_ = false;
}

DsmilTensors& FlatParameters::bag_grad_views() {
  if (grads_zero_) {
    grads_zero_ = false;
    scratch_pending_ = false;
    return grad_views_;
  }
  if (!scratch_.defined()) {
    // The same offsets in a buffer of the same size: each view as it is in grads_.
    scratch_ = torch::empty_like(grads_);
    for (torch::Tensor DsmilTensors::*view :
         {&DsmilTensors::w_in, &DsmilTensors::b_in, &DsmilTensors::w_q2, &DsmilTensors::b_q2, &DsmilTensors::w_v,
          &DsmilTensors::b_v, &DsmilTensors::w_bag, &DsmilTensors::b_bag}) {
      const torch::Tensor& g = grad_views_.*view;
      if (g.defined()) scratch_views_.*view = scratch_.as_strided(g.sizes(), g.strides(), g.storage_offset());
    }
  }
  scratch_pending_ = true;
  return scratch_views_;
}

void FlatParameters::add_bag_grads() {
  if (scratch_pending_) grads().add_(scratch_.narrow(0, 0, numel_));
  scratch_pending_ = false;
}

}  // namespace mil

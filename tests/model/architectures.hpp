#pragma once
// The DSMIL variants the hand-written step tests run over: the reference's options that change the step.
// Printed by name, so ctest's test names say which variant failed (and stay the same from run to run).
#include <ostream>
#include <string>
#include <vector>

#include "mil/model/dsmil.hpp"
#include "mil/model/dsmil_step.hpp"

namespace mil::test {

struct Architecture {
  int64_t classes;
  bool nonlinear_q, passing_v, value_relu;
  double dropout_v = 0.0;
};

// The variants the fp32 step tests cover: one to three classes, linear and nonlinear q, passing v, v without
// its ReLU, node dropout.
inline const std::vector<Architecture> kStepArchitectures = {
    {1, true, false, true}, {3, true, false, true},  {2, false, false, true},
    {2, false, true, true}, {1, false, true, false}, {2, true, true, true, 0.3},
};

inline ModelConfig config_of(const Architecture& a, int64_t feature_dim) {
  ModelConfig mc;
  mc.feature_dim = feature_dim;
  mc.num_classes = a.classes;
  mc.nonlinear_q = a.nonlinear_q;
  mc.passing_v = a.passing_v;
  mc.value_relu = a.value_relu;
  mc.dropout_v = a.dropout_v;
  return mc;
}

// "3 classes, nonlinear q, ReLU v, dropout 0.3"
inline std::string describe(const Architecture& a) {
  std::string s = std::to_string(a.classes) + (a.classes == 1 ? " class" : " classes");
  s += a.nonlinear_q ? ", nonlinear q" : ", linear q";
  if (a.passing_v) s += ", passing v";
  if (a.value_relu) s += ", ReLU v";
  if (a.dropout_v > 0) s += ", dropout " + std::to_string(a.dropout_v).substr(0, 3);
  return s;
}

inline void PrintTo(const Architecture& a, std::ostream* os) {
  *os << describe(a);
}

}  // namespace mil::test

namespace mil {

// How the steps' passes run, for test names: the CPU loops (kAuto on CPU) or the GPU's libtorch ops.
inline void PrintTo(StepPasses p, std::ostream* os) {
  *os << (p == StepPasses::kAuto ? "CPU loops" : "libtorch ops");
}

}  // namespace mil

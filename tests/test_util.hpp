#pragma once
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "mil/util/error.hpp"

namespace mil::test {

inline std::string data_path(const std::string& rel) {
  return (std::filesystem::path(DSMIL_TEST_DATA_DIR) / rel).string();
}

// |actual - expected| <= atol + rtol * |expected| everywhere, with a report of the worst element.
inline ::testing::AssertionResult all_close(const torch::Tensor& actual, const torch::Tensor& expected, double rtol,
                                            double atol) {
  if (actual.sizes() != expected.sizes()) {
    return ::testing::AssertionFailure() << "shape " << actual.sizes() << " != expected " << expected.sizes();
  }
  const torch::Tensor a = actual.detach().to(torch::kFloat64).cpu();
  const torch::Tensor e = expected.detach().to(torch::kFloat64).cpu();
  const torch::Tensor excess = (a - e).abs() - (atol + rtol * e.abs());
  const int64_t worst = excess.flatten().argmax().item<int64_t>();
  if (excess.flatten()[worst].item<double>() <= 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "element " << worst << ": " << a.flatten()[worst].item<double>()
                                       << " vs expected " << e.flatten()[worst].item<double>() << " (rtol " << rtol
                                       << ", atol " << atol << ")";
}

// Runs f with `n` libtorch threads, then restores the count (for results that must not depend on it).
template <class F>
void on_threads(int n, const F& f) {
  const int before = at::get_num_threads();
  at::set_num_threads(n);
  f();
  at::set_num_threads(before);
}

// Passes when `fn` throws mil::Error whose message holds every one of `parts` (and, when given, whose
// object() is `object`): what a user is told must name what they got wrong.
template <typename Fn>
::testing::AssertionResult throws_error_naming(Fn&& fn, const std::vector<std::string>& parts,
                                               const std::optional<std::string>& object = std::nullopt) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts) {
      if (msg.find(p) == std::string::npos) return ::testing::AssertionFailure() << "'" << p << "' not in: " << msg;
    }
    if (object && e.object() != *object) {
      return ::testing::AssertionFailure() << "object '" << e.object() << "', expected '" << *object << "': " << msg;
    }
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "no mil::Error thrown";
}

// A fresh empty directory under the system temp dir, removed when the object goes away.
// The message of the mil::Error that `fn` throws; "" when it throws none.
template <typename Fn>
std::string error_message(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "dsmil_test_XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace mil::test

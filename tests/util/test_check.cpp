// A broken invariant of ours reads differently from a user's mistake.
#include <gtest/gtest.h>

#include <cstdio>
#include <stdexcept>
#include <string>

#include "mil/io/files.hpp"
#include "mil/util/check.hpp"
#include "mil/util/error.hpp"
#include "mil/util/logging.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

TEST(Check, NamesThePlaceAndTheCondition) {
  try {
    const int rows = 3;
    MIL_CHECK(rows == 4, "rows " + std::to_string(rows));
    FAIL() << "no throw";
  } catch (const std::logic_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("internal error at "), std::string::npos) << msg;
    EXPECT_NE(msg.find("test_check.cpp:"), std::string::npos) << msg;
    EXPECT_NE(msg.find("rows == 4 (rows 3)"), std::string::npos) << msg;
  }
  EXPECT_NO_THROW(MIL_CHECK(true, std::string("never built")));
}

TEST(FailureReport, TellsAnInternalErrorFromAUsersMistake) {
  test::TempDir dir;
  const std::string failure = dir.file("out/failure");
  const int code = report_failure("dsmil_train", Error("slides/a.h5", "features", "rank 3, expected 2"), failure);
  EXPECT_EQ(code, 1);
  EXPECT_EQ(io::read_file(failure), "slides/a.h5: 'features': rank 3, expected 2\n");
  try {
    MIL_CHECK(1 + 1 == 3, "");
  } catch (const std::logic_error& e) {
    report_failure("dsmil_train", e, failure);
  }
  EXPECT_EQ(io::read_file(failure).rfind("internal error at ", 0), 0u) << io::read_file(failure);
}

}  // namespace
}  // namespace mil

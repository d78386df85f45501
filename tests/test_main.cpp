#include <gtest/gtest.h>

#include "mil/util/threads.hpp"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  mil::set_torch_threads(2);  // explicit, and identical on every machine so results are repeatable
  return RUN_ALL_TESTS();
}

// Label values -> DSMIL targets, for numeric and string labels, with and without a negative label.
#include <gtest/gtest.h>

#include "mil/data/labels.hpp"
#include "mil/util/error.hpp"

namespace mil {
namespace {

using Target = std::vector<float>;

TEST(ClassMap, NumericBinaryIsOneClass) {
  const ClassMap m = ClassMap::infer({"0", "1", "1", "0"}, 0, "", "labels.csv");
  EXPECT_EQ(m.num_classes(), 1);
  EXPECT_EQ(m.target("1", "", ""), Target{1});
  EXPECT_EQ(m.target("0", "", ""), Target{0});
  EXPECT_THROW(m.target("2", "", ""), Error);
}

TEST(ClassMap, NumericMultiClassFollowsTheReference) {
  // TCGA-style: 0 = LUAD, 1 = LUSC; with --num-classes 2 a value >= 2 is the negative (all-zero) label.
  const ClassMap m = ClassMap::infer({"0", "1", "2"}, 2, "", "labels.csv");
  EXPECT_EQ(m.num_classes(), 2);
  EXPECT_EQ(m.target("0", "", ""), (Target{1, 0}));
  EXPECT_EQ(m.target("1", "", ""), (Target{0, 1}));
  EXPECT_EQ(m.target("2", "", ""), (Target{0, 0}));
  EXPECT_EQ(m.stratum(m.target("2", "", "")), 2);
}

TEST(ClassMap, NumericInferredWithoutNegativeUsesEveryValueAsAClass) {
  const ClassMap m = ClassMap::infer({"0", "1", "2"}, 0, "", "labels.csv");
  EXPECT_EQ(m.num_classes(), 3);
  const ClassMap n = ClassMap::infer({"0", "1", "2"}, 0, "2", "labels.csv");
  EXPECT_EQ(n.num_classes(), 2);
  EXPECT_EQ(n.target("2", "", ""), (Target{0, 0}));
}

TEST(ClassMap, StringBinaryIsOneClassWithTheFirstNameNegative) {
  const ClassMap m = ClassMap::infer({"tumor", "normal", "tumor"}, 0, "", "labels.csv");
  EXPECT_EQ(m.num_classes(), 1);
  EXPECT_EQ(m.class_names(), std::vector<std::string>{"tumor"});
  EXPECT_EQ(m.negative_label(), "normal");
  EXPECT_EQ(m.target("tumor", "", ""), Target{1});
  EXPECT_EQ(m.target("normal", "", ""), Target{0});
}

TEST(ClassMap, StringClassesSortedLessTheNegativeLabel) {
  const ClassMap m = ClassMap::infer({"LUSC", "normal", "LUAD"}, 0, "normal", "labels.csv");
  EXPECT_EQ(m.class_names(), (std::vector<std::string>{"LUAD", "LUSC"}));
  EXPECT_EQ(m.target("LUSC", "", ""), (Target{0, 1}));
  EXPECT_EQ(m.target("normal", "", ""), (Target{0, 0}));
  EXPECT_EQ(m.name_of({0, 1}), "LUSC");
  EXPECT_EQ(m.name_of({0, 0}), "normal");
}

TEST(ClassMap, NumClassesThatDisagreeWithTheLabelsIsAnError) {
  try {
    ClassMap::infer({"a", "b", "c"}, 2, "", "labels.csv");
    FAIL() << "expected mil::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.object(), "--num-classes");
    EXPECT_NE(e.reason().find("the labels name 3 classes (a, b, c)"), std::string::npos) << e.what();
  }
}

TEST(ClassMap, NegativeLabelThatNeverOccursIsAnError) {
  try {
    ClassMap::infer({"a", "b"}, 0, "normal", "labels.csv");
    FAIL() << "expected mil::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.object(), "--negative-label");
    EXPECT_NE(e.reason().find("'normal' does not occur in the labels (a, b)"), std::string::npos) << e.what();
  }
}

TEST(ClassMap, JsonRoundTrip) {
  const ClassMap m = ClassMap::infer({"LUSC", "normal", "LUAD"}, 0, "normal", "labels.csv");
  const ClassMap back = ClassMap::from_json(m.to_json(), "model");
  EXPECT_EQ(back.class_names(), m.class_names());
  EXPECT_EQ(back.target("normal", "", ""), (Target{0, 0}));
  EXPECT_EQ(back.target("LUAD", "", ""), (Target{1, 0}));
}

// Labels 0-3 with 0 meaning normal: --negative-label 0 makes 1-3 the classes (it used to make no class at
// all, and the job died in libtorch's select()).
TEST(ClassMap, NumericNegativeLabelZeroLeavesTheOtherValuesAsClasses) {
  const ClassMap m = ClassMap::infer({"0", "1", "2", "3", "0"}, 0, "0", "labels.csv");
  EXPECT_EQ(m.class_names(), (std::vector<std::string>{"1", "2", "3"}));
  EXPECT_EQ(m.negative_label(), "0");
  EXPECT_EQ(m.target("0", "", ""), (Target{0, 0, 0}));
  EXPECT_EQ(m.target("1", "", ""), (Target{1, 0, 0}));
  EXPECT_EQ(m.target("3", "", ""), (Target{0, 0, 1}));
  EXPECT_EQ(m.name_of({0, 1, 0}), "2");
  EXPECT_EQ(m.name_of({0, 0, 0}), "0");
  const ClassMap back = ClassMap::from_json(m.to_json(), "model");  // dsmil_eval maps labels the same way
  EXPECT_EQ(back.target("2", "", ""), (Target{0, 1, 0}));
  EXPECT_EQ(back.target("0", "", ""), (Target{0, 0, 0}));
  // A negative label in the middle, and binary 0/1 with 0 named negative.
  const ClassMap mid = ClassMap::infer({"0", "1", "2"}, 0, "1", "labels.csv");
  EXPECT_EQ(mid.class_names(), (std::vector<std::string>{"0", "2"}));
  EXPECT_EQ(mid.target("2", "", ""), (Target{0, 1}));
  const ClassMap bin = ClassMap::infer({"0", "1"}, 0, "0", "labels.csv");
  EXPECT_EQ(bin.num_classes(), 1);
  EXPECT_EQ(bin.target("1", "", ""), Target{1});
}

// One stray numeric label used to make a class map of 10^9 classes (17 GB, then std::bad_alloc).
TEST(ClassMap, ANumericLabelImplyingTooManyClassesIsAnErrorNamingItAndTheFile) {
  try {
    ClassMap::infer({"0", "1", "999999999"}, 0, "", "/data/labels.csv");
    FAIL() << "expected mil::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.file(), "/data/labels.csv");
    EXPECT_NE(e.reason().find("numeric label 999999999 implies 1000000000 classes"), std::string::npos) << e.what();
    EXPECT_NE(e.reason().find("--num-classes"), std::string::npos) << e.what();
  }
  // 1,000 classes are fine; --num-classes takes the stray value as the negative label.
  std::vector<std::string> many;
  for (int i = 0; i < kMaxInferredClasses; ++i) many.push_back(std::to_string(i));
  EXPECT_EQ(ClassMap::infer(many, 0, "", "labels.csv").num_classes(), kMaxInferredClasses);
  const ClassMap m = ClassMap::infer({"0", "1", "999999999"}, 2, "", "labels.csv");
  EXPECT_EQ(m.target("999999999", "", ""), (Target{0, 0}));
}

}  // namespace
}  // namespace mil

// GradientReducer (framework/dist/gradient_reducer.h) under mpirun: the probe compares it with
// allreduce_gradients bit for bit, with and without gradient accumulation and an unused layer,
// and checks which buckets were sent during backward (overlap) and that no_sync sends nothing.
#include <gtest/gtest.h>

#include <string>

#include "tests/common/test_env.h"

namespace sdtrain {
namespace {

std::string run_probe(int ranks) {
  std::string output;
  const int code = test::run_command(
      test::mpirun(ranks) + " " + (test::binary_dir() / "bin" / "gradient_reducer_probe").string(), &output);
  EXPECT_EQ(code, 0) << output;
  return output;
}

TEST(GradientReducer, EqualsThePlainAllreduceOnTwoRanks) {
  const std::string output = run_probe(2);
  EXPECT_NE(output.find("rank 0: ok"), std::string::npos) << output;
  EXPECT_NE(output.find("rank 1: ok"), std::string::npos) << output;
}

TEST(GradientReducer, EqualsThePlainAllreduceOnThreeRanks) {
  const std::string output = run_probe(3);
  for (const char* line : {"rank 0: ok", "rank 1: ok", "rank 2: ok"}) {
    EXPECT_NE(output.find(line), std::string::npos) << output;
  }
}

}  // namespace
}  // namespace sdtrain

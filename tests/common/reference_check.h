#pragma once
// Running a Python reference-check script (the weights oracles tests/weights/check_original.py and
// check_original_xl.py) from a test.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/common/test_env.h"

namespace sdtrain::test {

/// Runs tests/<script> with the venv's python (SDTRAIN_PYTHON) as
/// `script --ref <reference> --check <c>...` and expects it to exit 0 and print "OK".
inline void expect_reference_check(const std::string& script, const std::filesystem::path& reference,
                                   const std::vector<std::string>& checks) {
  std::string command = env_or_fail("SDTRAIN_PYTHON") + " " + (source_dir() / "tests" / script).string() +
                        " --ref " + reference.string();
  for (const auto& check : checks) command += " --check " + check;
  std::string out;
  EXPECT_EQ(run_command(command, &out), 0) << command << "\n" << out;
  EXPECT_NE(out.find("OK"), std::string::npos) << out;
}

}  // namespace sdtrain::test

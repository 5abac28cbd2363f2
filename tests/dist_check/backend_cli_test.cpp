// `sdtrain` with distributed.backend: NCCL where NCCL cannot run: a config error (exit code 2)
// naming the field, before any training starts.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "framework/dist/communicator_factory.h"
#include "tests/common/test_env.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

TEST(BackendCli, NcclWithoutUsableCudaIsAConfigErrorWithExitCode2) {
  if (nccl_compiled_in() && torch::cuda::is_available()) GTEST_SKIP() << "NCCL is usable here";
  const fs::path dir = test::scratch_dir();
  const std::string config =
      test::write_text(dir / "cfg.pbtxt",
                       "plugin_libraries: \"" + test::library("sdtrain_test_plugins").string() + "\"\n" +
                           "run { output_dir: \"out\" max_steps: 1 device: \"cpu\" }\n"
                           "model { type: \"test_tiny_denoiser\" }\n"
                           "data { train { type: \"test_colors\" } batch_size: 2 transforms { resolution: 16 } }\n"
                           "distributed { backend: NCCL }\n");
  std::string output;
  const int code = test::run_command((test::binary_dir() / "bin" / "sdtrain").string() + " --config " + config, &output);
  EXPECT_EQ(code, 2) << output;
  EXPECT_NE(output.find("distributed.backend: NCCL"), std::string::npos) << output;
}

}  // namespace
}  // namespace sdtrain

// The sdtrain command line: help, listing, printing, and exit code 2 with a clear message for
// bad configs and overrides (never a crash or a stack trace).
#include <gtest/gtest.h>

#include "tests/common/test_env.h"

namespace sdtrain {
namespace {

std::string sdtrain_bin() { return (test::binary_dir() / "bin" / "sdtrain").string(); }

std::string good_config() {
  return test::write_text(test::scratch_dir() / "cfg.pbtxt",
                          "plugin_libraries: \"" + test::library("sdtrain_test_plugins").string() +
                              "\"\nrun { max_steps: 4 output_dir: \"out\" }\nmodel { type: \"test_tiny_denoiser\" }\n"
                              "data { train { type: \"test_colors\" } batch_size: 2 }\n");
}

TEST(Cli, HelpDocumentsTheOptions) {
  std::string out;
  ASSERT_EQ(test::run_command(sdtrain_bin() + " --help", &out), 0) << out;
  for (const char* option :
       {"--config", "--set", "--plugin", "--print-config", "--list-plugins", "--resume", "--fault"}) {
    EXPECT_NE(out.find(option), std::string::npos) << option << "\n" << out;
  }
}

TEST(Cli, ListPluginsShowsEveryFamily) {
  std::string out;
  ASSERT_EQ(test::run_command(sdtrain_bin() + " --list-plugins --plugin " +
                                  test::library("sdtrain_test_plugins").string(),
                              &out),
            0)
      << out;
  for (const char* text : {"model:", "dataset:", "scheduler", "lr_schedule", "callback:", "lambda_linear",
                           "progress", "csv_logger", "test_tiny_denoiser", "sdtrain_test.TinyDenoiserOptions"}) {
    EXPECT_NE(out.find(text), std::string::npos) << text << "\n" << out;
  }
}

TEST(Cli, PrintConfigAppliesOverrides) {
  std::string out;
  ASSERT_EQ(test::run_command(sdtrain_bin() + " --config " + good_config() + " --set run.max_steps=77 --print-config", &out), 0) << out;
  EXPECT_NE(out.find("max_steps: 77"), std::string::npos) << out;
  EXPECT_NE(out.find("gradient_accumulation_steps: 2"), std::string::npos) << out;
}

TEST(Cli, BadConfigExitsTwoWithLocation) {
  const std::string path = test::write_text(test::scratch_dir() / "bad.pbtxt", "run {\n  max_step: 4\n}\n");
  std::string out;
  EXPECT_EQ(test::run_command(sdtrain_bin() + " --config " + path, &out), 2) << out;
  EXPECT_NE(out.find(path + ":2:3: Message type \"sdtrain.RunConfig\" has no field named \"max_step\""), std::string::npos)
      << out;
  EXPECT_EQ(out.find("terminate called"), std::string::npos) << out;
}

TEST(Cli, BadOverrideExitsTwoNamingTheField) {
  std::string out;
  EXPECT_EQ(test::run_command(sdtrain_bin() + " --config " + good_config() + " --set data.batch_size=four", &out), 2) << out;
  EXPECT_NE(out.find("--set data.batch_size: sdtrain.DataConfig.batch_size expects int32, got 'four'"), std::string::npos)
      << out;
}

TEST(Cli, MalformedFaultRuleExitsTwoBeforeAnyWork) {
  const std::string config = good_config();
  const auto output_dir = std::filesystem::path(config).parent_path() / "out";
  std::string out;
  const std::string sdtrain_run = sdtrain_bin() + " --config " + config;
  EXPECT_EQ(test::run_command("SDTRAIN_FAULTS='collective.before:x=stall' " + sdtrain_run, &out), 2) << out;
  EXPECT_NE(out.find("config error: SDTRAIN_FAULTS: rule 'collective.before:x=stall': index 'x' is not a whole number"),
            std::string::npos)
      << out;
  EXPECT_EQ(test::run_command(sdtrain_run + " --fault checkpoint.after_parts_write:4=explode", &out), 2) << out;
  EXPECT_NE(out.find("--fault: rule 'checkpoint.after_parts_write:4=explode': unknown action 'explode'"),
            std::string::npos)
      << out;
  EXPECT_FALSE(std::filesystem::exists(output_dir)) << "the run started before the rules were checked";
}

TEST(Cli, UnknownOptionAndMissingConfig) {
  std::string out;
  EXPECT_EQ(test::run_command(sdtrain_bin() + " --frobnicate", &out), 2) << out;
  EXPECT_NE(out.find("unrecognised option '--frobnicate'"), std::string::npos) << out;
  EXPECT_EQ(test::run_command(sdtrain_bin(), &out), 2) << out;
  EXPECT_NE(out.find("--config FILE is required"), std::string::npos) << out;
}

}  // namespace
}  // namespace sdtrain

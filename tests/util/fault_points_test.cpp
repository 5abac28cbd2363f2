// Fault points: the rule grammar, the errors for malformed rules, which hits a rule matches (point,
// index, rank), and what the actions do to the process (death tests).
#include <gtest/gtest.h>

#include <unistd.h>

#include <csignal>
#include <cstdlib>

#include "framework/util/fault_points.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

/// Makes `variable` (unset when null) and `flags` the active rules.
void use_rules(const char* variable, const std::vector<std::string>& flags = {}) {
  if (variable != nullptr) {
    setenv("SDTRAIN_FAULTS", variable, 1);
  } else {
    unsetenv("SDTRAIN_FAULTS");
  }
  configure_fault_points(flags);
}

/// The ConfigError message of parsing `spec` as SDTRAIN_FAULTS ("" if it parses).
std::string parse_error(const std::string& spec) {
  try {
    parse_fault_rules(spec, "SDTRAIN_FAULTS");
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "";
}

// First in the file: in a process where no test configured the rules yet (ctest runs each test in
// its own process), the first fault point reached reads SDTRAIN_FAULTS itself.
TEST(FaultPoints, AProgramThatNeverConfiguresReadsTheVariableAtTheFirstHit) {
  if (detail::fault_points_state.load() != 0) GTEST_SKIP() << "an earlier test in this process configured the rules";
  EXPECT_EXIT(
      {
        setenv("SDTRAIN_FAULTS", "step.after_backward:3=exit:4", 1);
        fault_point(FaultPoint::kStepAfterBackward, 2);
        fault_point(FaultPoint::kStepAfterBackward, 3);
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(4), "fault point step.after_backward:3 fired: exit:4");
}

TEST(FaultPoints, ParsesPointIndexRankAndAction) {
  const auto rules = parse_fault_rules(
      " collective.before:8@rank1=stall ;checkpoint.after_parts_write:4=crash;; step.after_backward=exit:3;",
      "SDTRAIN_FAULTS");
  ASSERT_EQ(rules.size(), 3u);
  EXPECT_EQ(rules[0].point, FaultPoint::kCollectiveBefore);
  EXPECT_EQ(rules[0].index, 8);
  EXPECT_EQ(rules[0].rank, 1);
  EXPECT_EQ(rules[0].action, FaultAction::kStall);
  EXPECT_EQ(rules[0].text, "collective.before:8@rank1=stall");

  EXPECT_EQ(rules[1].point, FaultPoint::kCheckpointAfterPartsWrite);
  EXPECT_EQ(rules[1].index, 4);
  EXPECT_FALSE(rules[1].rank.has_value());
  EXPECT_EQ(rules[1].action, FaultAction::kCrash);
  EXPECT_EQ(rules[1].exit_code, kFaultCrashExitCode);

  EXPECT_EQ(rules[2].point, FaultPoint::kStepAfterBackward);
  EXPECT_FALSE(rules[2].index.has_value());
  EXPECT_EQ(rules[2].action, FaultAction::kExit);
  EXPECT_EQ(rules[2].exit_code, 3);

  EXPECT_TRUE(parse_fault_rules("", "SDTRAIN_FAULTS").empty());
  EXPECT_TRUE(parse_fault_rules(" ; ", "SDTRAIN_FAULTS").empty());
  EXPECT_EQ(parse_fault_rules("collective.before:0@rank0=exit:0", "--fault")[0].exit_code, 0);
}

TEST(FaultPoints, MalformedRulesNameTheSourceTheRuleAndWhatWasExpected) {
  const std::string expected =
      " (expected POINT[:INDEX][@rankN]=crash|stall|exit:CODE|enospc, rules separated by ';')";
  EXPECT_EQ(parse_error("collective.before:8"), "SDTRAIN_FAULTS: rule 'collective.before:8': no '=ACTION'" + expected);
  EXPECT_EQ(parse_error("collective.before=explode"),
            "SDTRAIN_FAULTS: rule 'collective.before=explode': unknown action 'explode'" + expected);
  EXPECT_EQ(parse_error("collective.before=exit:256"),
            "SDTRAIN_FAULTS: rule 'collective.before=exit:256': exit status '256' is not a number from 0 to 255" +
                expected);
  EXPECT_EQ(parse_error("collective.before=exit:"),
            "SDTRAIN_FAULTS: rule 'collective.before=exit:': exit status '' is not a number from 0 to 255" + expected);
  EXPECT_EQ(parse_error("collective.before:-1=crash"),
            "SDTRAIN_FAULTS: rule 'collective.before:-1=crash': index '-1' is not a whole number (0, 1, ...)" + expected);
  EXPECT_EQ(parse_error("collective.before:8x=crash"),
            "SDTRAIN_FAULTS: rule 'collective.before:8x=crash': index '8x' is not a whole number (0, 1, ...)" + expected);
  EXPECT_EQ(parse_error("collective.before@node1=crash"),
            "SDTRAIN_FAULTS: rule 'collective.before@node1=crash': rank filter '@node1' is not '@rank' followed by a "
            "rank (0, 1, ...)" +
                expected);
  EXPECT_EQ(parse_error("collective.befor:3=crash"),
            "SDTRAIN_FAULTS: rule 'collective.befor:3=crash': unknown fault point 'collective.befor' (did you mean "
            "'collective.before'?); the points are checkpoint.after_parts_write, checkpoint.write, collective.before, "
            "step.after_backward" +
                expected);
  // A full disk can only be simulated where files are written.
  EXPECT_EQ(parse_error("step.after_backward:2=enospc"),
            "SDTRAIN_FAULTS: rule 'step.after_backward:2=enospc': action 'enospc' applies only to point "
            "checkpoint.write" +
                expected);
  // The bad rule is named among good ones, and the source is the one given.
  try {
    parse_fault_rules("collective.before:8=stall;crash", "--fault");
    FAIL() << "no error";
  } catch (const ConfigError& error) {
    EXPECT_EQ(std::string(error.what()).rfind("--fault: rule 'crash': no '=ACTION'", 0), 0u) << error.what();
  }
}

TEST(FaultPoints, ConfigureRejectsAMalformedVariableOrFlag) {
  setenv("SDTRAIN_FAULTS", "collective.before:x=stall", 1);
  EXPECT_THROW(configure_fault_points(), ConfigError);
  unsetenv("SDTRAIN_FAULTS");
  EXPECT_THROW(configure_fault_points({"collective.before=stall", "checkpoint=crash"}), ConfigError);
  EXPECT_NO_THROW(use_rules(nullptr));
}

TEST(FaultPoints, HitsThatNoRuleMatchesReturn) {
  set_fault_point_rank(0);
  use_rules("collective.before:8@rank1=crash", {"checkpoint.after_parts_write:4=exit:9"});
  fault_point(FaultPoint::kCollectiveBefore, 8);  // another rank
  fault_point(FaultPoint::kCollectiveBefore, 7);
  fault_point(FaultPoint::kStepAfterBackward, 8);  // another point
  fault_point(FaultPoint::kCheckpointAfterPartsWrite, 3);  // another index
  set_fault_point_rank(1);
  fault_point(FaultPoint::kCollectiveBefore, 9);
  use_rules(nullptr);
  fault_point(FaultPoint::kCollectiveBefore, 8);  // no rules at all
  SUCCEED();
}

TEST(FaultPoints, EnospcReturnsTrueAtItsIndexAndRankAndNamesItself) {
  const auto rules = parse_fault_rules("checkpoint.write:4@rank1=enospc", "--fault");
  ASSERT_EQ(rules.size(), 1u);
  EXPECT_EQ(rules[0].point, FaultPoint::kCheckpointWrite);
  EXPECT_EQ(rules[0].action, FaultAction::kDiskFull);

  set_fault_point_rank(1);
  use_rules(nullptr, {"checkpoint.write:4@rank1=enospc"});
  EXPECT_FALSE(fault_point(FaultPoint::kCheckpointWrite, 2));
  EXPECT_FALSE(fault_point(FaultPoint::kCheckpointAfterPartsWrite, 4));
  ::testing::internal::CaptureStderr();
  EXPECT_TRUE(fault_point(FaultPoint::kCheckpointWrite, 4));
  EXPECT_EQ(::testing::internal::GetCapturedStderr(),
            "sdtrain: rank 1: fault point checkpoint.write:4 fired: enospc (writes fail as on a full disk) "
            "(rule 'checkpoint.write:4@rank1=enospc')\n");
  set_fault_point_rank(0);
  EXPECT_FALSE(fault_point(FaultPoint::kCheckpointWrite, 4));
  use_rules(nullptr);
}

TEST(FaultPoints, CrashExitsWithTheKillStatusAndNamesPointIndexRankAndAction) {
  EXPECT_EXIT(
      {
        set_fault_point_rank(1);
        use_rules("collective.before:8@rank1=crash");
        fault_point(FaultPoint::kCollectiveBefore, 7);
        fault_point(FaultPoint::kCollectiveBefore, 8);
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(kFaultCrashExitCode),
      "sdtrain: rank 1: fault point collective.before:8 fired: crash \\(exit status 137\\) "
      "\\(rule 'collective.before:8@rank1=crash'\\)");
}

TEST(FaultPoints, ExitUsesItsCodeAndARuleWithoutIndexFiresAtTheFirstHit) {
  EXPECT_EXIT(
      {
        set_fault_point_rank(0);
        use_rules(nullptr, {"step.after_backward=exit:3"});
        fault_point(FaultPoint::kCollectiveBefore, 1);
        fault_point(FaultPoint::kStepAfterBackward, 5);
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(3), "sdtrain: rank 0: fault point step.after_backward:5 fired: exit:3");
}

TEST(FaultPoints, FlagRulesAddToTheVariables) {
  const auto configure = [] {
    set_fault_point_rank(2);
    use_rules("collective.before:3=exit:5", {"checkpoint.after_parts_write:6@rank2=exit:7"});
  };
  EXPECT_EXIT(
      {
        configure();
        fault_point(FaultPoint::kCollectiveBefore, 3);
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(5), "rank 2: fault point collective.before:3 fired: exit:5");
  EXPECT_EXIT(
      {
        configure();
        fault_point(FaultPoint::kCheckpointAfterPartsWrite, 6);
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(7), "rank 2: fault point checkpoint.after_parts_write:6 fired: exit:7");
}

TEST(FaultPoints, AFailedConfigureKeepsThePreviousRules) {
  EXPECT_EXIT(
      {
        use_rules("step.after_backward:6=exit:7");
        setenv("SDTRAIN_FAULTS", "nonsense", 1);
        try {
          configure_fault_points();
        } catch (const ConfigError&) {
          fault_point(FaultPoint::kStepAfterBackward, 6);
        }
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(7), "fault point step.after_backward:6 fired: exit:7");
}

TEST(FaultPoints, StallNeverReturns) {
  // SIGALRM (default action: terminate) ends the stalled process after a second; returning from
  // the fault point would exit 0 instead.
  EXPECT_EXIT(
      {
        set_fault_point_rank(1);
        use_rules("collective.before:2=stall");
        alarm(1);
        fault_point(FaultPoint::kCollectiveBefore, 2);
        std::_Exit(0);
      },
      ::testing::KilledBySignal(SIGALRM), "sdtrain: rank 1: fault point collective.before:2 fired: stall");
}

}  // namespace
}  // namespace sdtrain

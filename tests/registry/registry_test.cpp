// The registries: lookup, listing, unknown types with suggestions, typed options.
#include <gtest/gtest.h>

#include "framework/registry/registry.h"
#include "framework/util/strings.h"
#include "plugins/schedulers/lr/lr_schedules.pb.h"
#include "sdtrain/callback.h"
#include "sdtrain/errors.h"
#include "sdtrain/lr_schedule.h"
#include "sdtrain/noise_scheduler.h"

namespace sdtrain {
namespace {

TEST(Registry, BuiltinsAreRegisteredWithDescriptionsAndOptions) {
  for (const char* name : {"lambda_linear", "constant", "cosine", "linear"}) {
    const PluginEntry* entry = Registry<LrSchedule>::instance().find(name);
    ASSERT_NE(entry, nullptr) << name;
    EXPECT_FALSE(entry->description.empty());
    EXPECT_TRUE(entry->library.empty());
  }
  EXPECT_EQ(Registry<LrSchedule>::instance().find("lambda_linear")->options_type->full_name(),
            "sdtrain.LambdaLinearScheduleOptions");
  ASSERT_NE(Registry<Callback>::instance().find("progress"), nullptr);
  ASSERT_NE(Registry<Callback>::instance().find("csv_logger"), nullptr);
}

TEST(Registry, EntriesAreSorted) {
  const auto entries = Registry<LrSchedule>::instance().entries();
  for (std::size_t i = 1; i < entries.size(); ++i) EXPECT_LT(entries[i - 1].name, entries[i].name);
}

TEST(Registry, UnknownTypeListsRegisteredAndSuggests) {
  PluginSpec spec;
  spec.set_type("lamda_linear");
  try {
    Registry<LrSchedule>::instance().create(spec, PluginContext{}, "lr_schedule");
    FAIL();
  } catch (const ConfigError& error) {
    EXPECT_STREQ(error.what(),
                 "lr_schedule.type: unknown lr_schedule type 'lamda_linear'; did you mean lambda_linear? "
                 "Registered lr_schedule types: constant, cosine, lambda_linear, linear");
  }
  spec.set_type("");
  EXPECT_THROW(Registry<LrSchedule>::instance().check(spec, "lr_schedule"), ConfigError);
}

TEST(Registry, DefaultOptionsWhenAbsentAndTypedOptionsWhenGiven) {
  PluginSpec spec;
  spec.set_type("lambda_linear");
  auto schedule = Registry<LrSchedule>::instance().create(spec, PluginContext{}, "lr_schedule");
  EXPECT_DOUBLE_EQ(schedule->factor(0), 1e-6);
  EXPECT_DOUBLE_EQ(schedule->factor(1), 1.0);
  LambdaLinearScheduleOptions options;
  options.set_warm_up_steps(10);
  options.set_f_start(0.0);
  spec.mutable_options()->PackFrom(options);
  schedule = Registry<LrSchedule>::instance().create(spec, PluginContext{}, "lr_schedule");
  EXPECT_DOUBLE_EQ(schedule->factor(5), 0.5);
}

TEST(Registry, DuplicateNamesAreRefused) {
  PluginEntry entry;
  entry.name = "constant";
  entry.options_type = ConstantScheduleOptions::descriptor();
  EXPECT_THROW(Registry<LrSchedule>::instance().add(entry, nullptr), PluginError);
}

TEST(Strings, ClosestMatch) {
  EXPECT_EQ(closest_match("image_foldr", {"image_folder", "text_only"}), "image_folder");
  EXPECT_EQ(closest_match("zzzzzz", {"image_folder", "text_only"}), "");
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
}

}  // namespace
}  // namespace sdtrain

// The text_only dataset plugin (validation prompts).
#include <string>

#include <gtest/gtest.h>

#include "tests/data/dataset_support.h"
#include "tests/data/test_support.h"

namespace sdtrain {
namespace {

using testing::config_error;
using testing::make_dataset;

TEST(TextOnlyDataset, RepeatsEachPromptOncePerRankByDefault) {
  TextOnlyOptions options;
  options.add_prompts("a man in armor");
  options.add_prompts("a woman in a red dress");
  PluginContext context;
  context.world_size = 2;
  const auto dataset = make_dataset("text_only", options, context);
  ASSERT_EQ(dataset->size(), 4u);
  const char* expected[] = {"a man in armor", "a man in armor", "a woman in a red dress", "a woman in a red dress"};
  for (std::size_t i = 0; i < 4; ++i) {
    const Sample sample = dataset->get(i);
    EXPECT_EQ(sample.caption, expected[i]);
    EXPECT_TRUE(sample.encoded.empty());
    EXPECT_TRUE(sample.image.empty());
  }
  EXPECT_EQ(dataset->get(0).key, "prompts[0]#0");
  EXPECT_EQ(dataset->get(3).key, "prompts[1]#1");
  // Round-robin sharding (rank r takes r, r + 2, ...) gives every rank every prompt.
  EXPECT_EQ(dataset->get(0).caption, dataset->get(1).caption);

  EXPECT_EQ(make_dataset("text_only", options)->size(), 2u);  // one rank
  EXPECT_EQ(make_dataset("text_only", options)->get(1).key, "prompts[1]");
  options.set_repeat(3);
  EXPECT_EQ(make_dataset("text_only", options, context)->size(), 6u);
}

TEST(TextOnlyDataset, ReadsPromptsFileRelativeToTheConfig) {
  testing::TempDir dir;
  dir.file("prompts.txt", "a man with a crown on his head\r\n\n  \nanother prompt\n");
  TextOnlyOptions options;
  options.add_prompts("from options");
  options.set_prompts_file("prompts.txt");
  PluginContext context;
  context.base_dir = dir.path().string();
  const auto dataset = make_dataset("text_only", options, context);
  ASSERT_EQ(dataset->size(), 3u);
  EXPECT_EQ(dataset->get(0).caption, "from options");
  EXPECT_EQ(dataset->get(1).caption, "a man with a crown on his head");
  EXPECT_EQ(dataset->get(1).key, (dir.path() / "prompts.txt").string() + ":1");
  EXPECT_EQ(dataset->get(2).caption, "another prompt");
  EXPECT_EQ(dataset->get(2).key, (dir.path() / "prompts.txt").string() + ":4");
}

TEST(TextOnlyDataset, ConfigErrors) {
  EXPECT_EQ(config_error("text_only", TextOnlyOptions()),
            "data.train.options.prompts: no prompts (set prompts or a non-empty prompts_file)");
  TextOnlyOptions options;
  options.set_prompts_file("/nonexistent/prompts.txt");
  EXPECT_EQ(config_error("text_only", options),
            "data.train.options.prompts_file: /nonexistent/prompts.txt: cannot read: No such file or directory");
  options.Clear();
  options.add_prompts("x");
  options.set_repeat(-1);
  EXPECT_EQ(config_error("text_only", options),
            "data.train.options.repeat: must be >= 0 (0 = one copy per rank), got -1");
}

}  // namespace
}  // namespace sdtrain

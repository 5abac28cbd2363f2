// The sampler's sharding and the loader's determinism and bad-data policy.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "framework/data/data_loader.h"
#include "framework/registry/plugin_loader.h"
#include "framework/registry/registry.h"
#include "sdtrain/errors.h"
#include "test_plugins.pb.h"
#include "tests/common/test_env.h"

namespace sdtrain {
namespace {

TEST(DistributedSampler, RanksSplitTheGlobalBatchOfOneRank) {
  DistributedSampler single(20, 4, 0, 1, true, 7);
  DistributedSampler rank0(20, 2, 0, 2, true, 7);
  DistributedSampler rank1(20, 2, 1, 2, true, 7);
  EXPECT_EQ(single.batches_per_epoch(), 5);
  EXPECT_EQ(rank0.batches_per_epoch(), 5);
  for (int64_t batch = 0; batch < 5; ++batch) {
    auto expected = single.batch_indices(3, batch);
    auto got = rank0.batch_indices(3, batch);
    auto second = rank1.batch_indices(3, batch);
    got.insert(got.end(), second.begin(), second.end());
    EXPECT_EQ(got, expected) << "batch " << batch;
  }
}

TEST(DistributedSampler, ShufflesPerEpochDeterministically) {
  DistributedSampler sampler(50, 5, 0, 1, true, 1);
  const auto epoch0 = sampler.permutation(0);
  EXPECT_NE(epoch0, sampler.permutation(1));
  EXPECT_EQ(epoch0, DistributedSampler(50, 5, 0, 1, true, 1).permutation(0));
  EXPECT_EQ(std::set<int64_t>(epoch0.begin(), epoch0.end()).size(), 50u);
  DistributedSampler ordered(50, 5, 0, 1, false, 1);
  EXPECT_EQ(ordered.batch_indices(0, 1), (std::vector<int64_t>{5, 6, 7, 8, 9}));
}

TEST(DistributedSampler, DropsTheIncompleteGlobalBatchAndRefusesTinySets) {
  EXPECT_EQ(DistributedSampler(23, 4, 0, 2, true, 0).batches_per_epoch(), 2);
  try {
    DistributedSampler(5, 4, 0, 2, true, 0);
    FAIL();
  } catch (const ConfigError& error) {
    EXPECT_STREQ(error.what(),
                 "data.batch_size: the training set has 5 samples, fewer than one global batch of 2 ranks x 4 images");
  }
}

std::shared_ptr<const Dataset> colors(int count, int bad_index) {
  load_plugin_library(test::library("sdtrain_test_plugins").string());
  sdtrain_test::ColorsOptions options;
  options.set_count(count);
  options.set_size(24);
  options.set_bad_index(bad_index);
  PluginSpec spec;
  spec.set_type("test_colors");
  spec.mutable_options()->PackFrom(options);
  return Registry<Dataset>::instance().create(spec, PluginContext{}, "data.train");
}

DataLoaderOptions loader_options(int workers) {
  DataLoaderOptions options;
  options.batch_size = 4;
  options.num_workers = workers;
  options.seed = 3;
  options.transforms.set_resolution(16);
  return options;
}

TEST(DataLoader, SameBatchesWithAndWithoutWorkers) {
  DataLoader serial(colors(16, -1), loader_options(0));
  DataLoader threaded(colors(16, -1), loader_options(2));
  serial.seek(1, 0);
  threaded.seek(1, 0);
  int batches = 0;
  while (auto a = serial.next()) {
    auto b = threaded.next();
    ASSERT_TRUE(b.has_value());
    EXPECT_TRUE(torch::equal(a->pixels, b->pixels));
    EXPECT_EQ(a->captions, b->captions);
    EXPECT_EQ(a->seeds, b->seeds);
    EXPECT_EQ(a->pixels.sizes(), (std::vector<int64_t>{4, 3, 16, 16}));
    ++batches;
  }
  EXPECT_EQ(batches, 4);
  EXPECT_FALSE(threaded.next().has_value());
}

TEST(DataLoader, SeekResumesAtTheSameBatch) {
  DataLoader loader(colors(16, -1), loader_options(1));
  loader.seek(2, 0);
  loader.next();
  auto second = loader.next();
  loader.seek(2, 1);
  auto resumed = loader.next();
  EXPECT_TRUE(torch::equal(second->pixels, resumed->pixels));
  EXPECT_EQ(second->keys, resumed->keys);
}

TEST(DataLoader, BadSampleIsReplacedAndCounted) {
  DataLoaderOptions options = loader_options(2);
  options.shuffle = false;
  DataLoader loader(colors(16, 5), options);
  loader.seek(0, 0);
  loader.next();
  auto batch = loader.next();  // indices 4..7, 5 is bad → replaced by 6
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->keys, (std::vector<std::string>{"colors/4.png", "colors/6.png", "colors/6.png", "colors/7.png"}));
  EXPECT_EQ(batch->pixels.size(0), 4);
  EXPECT_EQ(loader.bad_samples(), 1);
}

/// The DataError message of the loader's next batch ("" when it gives one).
std::string next_batch_error(DataLoader& loader) {
  try {
    loader.next();
  } catch (const DataError& error) {
    return error.what();
  }
  return "";
}

TEST(DataLoader, TooManyBadSamplesAbortWithTheReason) {
  DataLoaderOptions options = loader_options(0);
  options.shuffle = false;
  options.bad_data.set_max_bad_samples(0);
  DataLoader loader(colors(16, 1), options);
  loader.seek(0, 0);
  EXPECT_EQ(next_batch_error(loader),
            "1 bad samples exceed data.bad_data.max_bad_samples=0; last: colors/1.png: corrupt (test)");
}

// What a checkpoint restores counts towards the limit; a sample already counted is not again.
TEST(DataLoader, RestoredBadSamplesCountTowardsTheLimit) {
  DataLoaderOptions options = loader_options(0);
  options.shuffle = false;
  options.bad_data.set_max_bad_samples(1);
  std::set<std::string> met;
  {
    DataLoader first(colors(16, 1), options);
    first.seek(0, 0);
    ASSERT_TRUE(first.next().has_value());  // meets sample 1: 1 bad sample, at the limit
    met = first.bad_sample_keys();
    ASSERT_EQ(met.size(), 1u);
  }
  {
    DataLoader resumed(colors(16, 1), options);
    resumed.restore_bad_samples(met);
    resumed.seek(1, 0);
    ASSERT_TRUE(resumed.next().has_value());  // meets sample 1 again: still 1
    EXPECT_EQ(resumed.bad_sample_keys(), met);
  }
  DataLoader resumed(colors(16, 1), options);
  resumed.restore_bad_samples({"colors/9.png"});  // another sample met before the checkpoint
  EXPECT_EQ(resumed.bad_samples(), 1);
  resumed.seek(0, 0);
  EXPECT_EQ(next_batch_error(resumed),
            "2 bad samples exceed data.bad_data.max_bad_samples=1; last: colors/1.png: corrupt (test)");
}

// DreamBooth: an epoch of max(#instance, #class) pairs, pair i = (instance i mod 3, class i),
// each micro-batch its instance samples followed by their class samples, with seeds of their own.
TEST(DataLoader, PriorPreservationPairsInstanceAndClassSamples) {
  DataLoaderOptions options = loader_options(1);
  options.batch_size = 2;
  options.prior_dataset = colors(5, -1);
  options.prior_loss_weight = 0.5;
  DataLoader loader(colors(3, -1), options);
  const DistributedSampler sampler(5, 2, 0, 1, true, options.seed);
  ASSERT_EQ(loader.batches_per_epoch(), 2) << "5 pairs, batches of 2, the incomplete one dropped";
  std::set<std::string> class_keys;
  loader.seek(4, 0);
  for (int64_t b = 0; b < 2; ++b) {
    const auto batch = loader.next();
    ASSERT_TRUE(batch.has_value());
    const std::vector<int64_t> pairs = sampler.batch_indices(4, b);
    ASSERT_EQ(batch->keys.size(), 4u);
    EXPECT_EQ(batch->pixels.size(0), 4);
    EXPECT_EQ(batch->prior_samples, 2);
    EXPECT_EQ(batch->prior_loss_weight, 0.5);
    for (std::size_t j = 0; j < 2; ++j) {
      EXPECT_EQ(batch->keys[j], "colors/" + std::to_string(pairs[j] % 3) + ".png");
      EXPECT_EQ(batch->keys[2 + j], "colors/" + std::to_string(pairs[j]) + ".png");
      class_keys.insert(batch->keys[2 + j]);
    }
    EXPECT_EQ(std::set<uint64_t>(batch->seeds.begin(), batch->seeds.end()).size(), 4u)
        << "class samples draw from seeds of their own";
  }
  EXPECT_EQ(class_keys.size(), 4u) << "an epoch's pairs are distinct";

  // A plain loader over the same instance images gives the same instance rows, seeds included.
  DataLoaderOptions plain_options = loader_options(1);
  plain_options.batch_size = 2;
  plain_options.shuffle = false;
  options.shuffle = false;
  DataLoader plain(colors(3, -1), plain_options);
  DataLoader paired(colors(3, -1), options);
  plain.seek(0, 0);
  paired.seek(0, 0);
  const auto a = plain.next();
  const auto b = paired.next();
  EXPECT_EQ(a->prior_samples, 0);
  EXPECT_EQ(std::vector<uint64_t>(b->seeds.begin(), b->seeds.begin() + 2), a->seeds);
  EXPECT_TRUE(torch::equal(b->pixels.narrow(0, 0, 2), a->pixels));
}

TEST(DataLoader, BadClassSamplesAreReplacedAndCountedApart) {
  DataLoaderOptions options = loader_options(0);
  options.batch_size = 2;
  options.shuffle = false;
  options.prior_dataset = colors(4, 1);
  DataLoader loader(colors(4, -1), options);
  loader.seek(0, 0);
  const auto batch = loader.next();  // pairs 0, 1: class 1 is bad and replaced by class 2
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->keys,
            (std::vector<std::string>{"colors/0.png", "colors/1.png", "colors/0.png", "colors/2.png"}));
  EXPECT_EQ(loader.bad_sample_keys(), (std::set<std::string>{"class/#1"}));  // apart from instance sample #1
}

TEST(CaptionDropout, UniformFromSeedIsSplitmix64) {
  // splitmix64's published first output for state 0 is 0xE220A8397B1DCDAF; the uniform is its top
  // 53 bits / 2^53, so the value is fixed on every platform and standard library.
  EXPECT_EQ(uniform_from_seed(0), static_cast<double>(0xE220A8397B1DCDAFULL >> 11) / 9007199254740992.0);
  for (uint64_t seed = 0; seed < 1000; ++seed) {
    const double u = uniform_from_seed(seed * 0x9E3779B97F4A7C15ULL);
    EXPECT_GE(u, 0.0);
    EXPECT_LT(u, 1.0);
  }
}

TEST(CaptionDropout, DropsAboutTheRequestedShareReproducibly) {
  DataLoaderOptions options = loader_options(0);
  options.caption_dropout = 0.3f;
  options.shuffle = false;
  auto run = [&] {
    DataLoader loader(colors(400, -1), options);
    loader.seek(0, 0);
    std::vector<std::string> captions;
    while (auto batch = loader.next()) captions.insert(captions.end(), batch->captions.begin(), batch->captions.end());
    return captions;
  };
  const std::vector<std::string> first = run();
  ASSERT_EQ(first.size(), 400u);
  EXPECT_EQ(first, run());
  int64_t dropped = 0;
  for (std::size_t i = 0; i < first.size(); ++i) {
    if (first[i].empty()) {
      ++dropped;
      // Which caption is dropped is the documented draw: the sample seed's own uniform.
      EXPECT_LT(uniform_from_seed(mix_seed(mix_seed(options.seed, 0, i), 0xCAD0)), static_cast<double>(options.caption_dropout)) << i;
    } else {
      EXPECT_GE(uniform_from_seed(mix_seed(mix_seed(options.seed, 0, i), 0xCAD0)), static_cast<double>(options.caption_dropout)) << i;
    }
  }
  EXPECT_GT(dropped, 400 * 0.3 - 40);
  EXPECT_LT(dropped, 400 * 0.3 + 40);
}

}  // namespace
}  // namespace sdtrain

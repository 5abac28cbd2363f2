// A WebDataset tar shard, read as the webdataset dataset plugin reads it: the shard listed by
// libarchive, its members grouped into samples, every sample read by offset. Bad input must end
// in ConfigError (a shard that is not tar, or is compressed) or DataError (a bad sample).
#include "plugins/datasets/datasets.pb.h"
#include "tests/fuzz/fuzz_dataset.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  sdtrain::WebDatasetOptions options;
  options.add_shards(sdtrain::fuzz::write_input(".tar", data, size));
  options.set_caption_extension(size % 2 == 0 ? "txt" : "json");
  sdtrain::fuzz::read_every_sample("webdataset", options);
  return 0;
}

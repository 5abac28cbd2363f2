// A WebDataset tar shard, read as the webdataset dataset plugin reads it: the shard listed by
// libarchive, its members grouped into samples, every sample read by offset. Bad input must end
// in ConfigError (a shard that is not tar, or is compressed) or DataError (a bad sample).
#include <unistd.h>

#include <fstream>
#include <string>

#include "plugins/datasets/datasets.pb.h"
#include "sdtrain/errors.h"
#include "tests/data/dataset_support.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = "/tmp/sdtrain-tar-fuzz-" + std::to_string(::getpid()) + ".tar";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  sdtrain::WebDatasetOptions options;
  options.add_shards(path);
  options.set_caption_extension(size % 2 == 0 ? "txt" : "json");
  try {
    const auto dataset = sdtrain::testing::make_dataset("webdataset", options);
    for (std::size_t i = 0; i < dataset->size(); ++i) {
      try {
        dataset->get(i);
      } catch (const sdtrain::DataError&) {
      }
    }
  } catch (const sdtrain::ConfigError&) {
  }
  return 0;
}

// A Parquet file, read as the parquet dataset plugin reads it: the footer and schema checked,
// then every row's image and caption read through the row-group cache. Bad input must end in
// ConfigError (not Parquet, wrong columns) or DataError (a corrupt row group, a null image).
#include <unistd.h>

#include <fstream>
#include <string>

#include "plugins/datasets/datasets.pb.h"
#include "sdtrain/errors.h"
#include "tests/data/dataset_support.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = "/tmp/sdtrain-parquet-fuzz-" + std::to_string(::getpid()) + ".parquet";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  sdtrain::ParquetOptions options;
  options.add_files(path);
  options.set_allow_empty_captions(true);
  options.set_cached_row_groups(1);
  try {
    const auto dataset = sdtrain::testing::make_dataset("parquet", options);
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

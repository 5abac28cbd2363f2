// A Parquet file, read as the parquet dataset plugin reads it: the footer and schema checked,
// then every row's image and caption read through the row-group cache. Bad input must end in
// ConfigError (not Parquet, wrong columns) or DataError (a corrupt row group, a null image).
#include "plugins/datasets/datasets.pb.h"
#include "tests/fuzz/fuzz_dataset.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  sdtrain::ParquetOptions options;
  options.add_files(sdtrain::fuzz::write_input(".parquet", data, size));
  options.set_allow_empty_captions(true);
  options.set_cached_row_groups(1);
  sdtrain::fuzz::read_every_sample("parquet", options);
  return 0;
}

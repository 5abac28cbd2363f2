// Throughput of sdtrain's training data loader: a dataset (an image_folder with metadata.csv,
// WebDataset .tar shards or Parquet files, by the path's layout: plugins/datasets/dataset_path.h)
// through DataLoader with the recipe's transforms (short side to 512 bicubic, random crop 512,
// flip, to [-1, 1]), batch 4, shuffled (shard by shard through a buffer of 1000 for the sharded
// layouts), with N worker threads. Run through bench_data.py --workers N or bench_sharded.py,
// which time torch.utils.data.DataLoader with N worker processes over the same images (PIL; the
// webdataset and datasets libraries for the sharded layouts) and print the ratio. Not a test.
//
//   data_loader_bench <dataset path> <workers> [epochs]
//
// Prints "images_per_s <rate>" over `epochs` epochs (default 3) after one warm-up epoch.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "framework/data/data_loader.h"
#include "plugins/builtin_plugins.h"
#include "plugins/datasets/dataset_path.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: data_loader_bench <dataset path> <workers> [epochs]\n";
    return 2;
  }
  const int workers = std::stoi(argv[2]);
  const int epochs = argc > 3 ? std::stoi(argv[3]) : 3;
  torch::set_num_threads(1);  // the transforms are ours; torch only allocates the tensors
  sdtrain::anchor_builtin_plugins();
  std::shared_ptr<const sdtrain::Dataset> dataset = sdtrain::open_dataset_path(argv[1]);

  sdtrain::DataLoaderOptions options;  // the recipe's transforms: 512, bicubic, random crop, flip
  options.batch_size = 4;
  options.num_workers = workers;
  options.seed = 1;
  sdtrain::DataLoader loader(dataset, options);
  double checksum = 0;
  auto run_epoch = [&](int64_t epoch) {
    int64_t images = 0;
    loader.seek(epoch, 0);
    while (auto batch = loader.next()) {
      checksum += batch->pixels.data_ptr<float>()[0];
      images += batch->pixels.size(0);
    }
    return images;
  };
  run_epoch(0);  // warm-up: threads started, files in the page cache
  const auto start = std::chrono::steady_clock::now();
  int64_t images = 0;
  for (int epoch = 1; epoch <= epochs; ++epoch) images += run_epoch(epoch);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("images %lld\nimages_per_s %.2f\nchecksum %.3f\n", static_cast<long long>(images), images / seconds,
              checksum);
  return 0;
}

// Throughput of the training data path per image, single-threaded: read + decode + the recipe's
// transforms (short side to 512 bicubic, random crop 512, flip, to [-1, 1] float). Run through
// bench_data.py, which times PIL on the same files and prints the ratio.
//
//   data_bench <folder of images> [passes]
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "framework/data/image_codec.h"
#include "framework/data/transforms.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: data_bench <image folder> [passes]\n";
    return 2;
  }
  const int passes = argc > 2 ? std::stoi(argv[2]) : 3;
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(argv[1])) {
    const std::string ext = entry.path().extension().string();
    if (ext == ".jpg" || ext == ".png" || ext == ".webp") files.push_back(entry.path().string());
  }
  if (files.empty()) {
    std::cerr << "data_bench: no images in " << argv[1] << "\n";
    return 2;
  }
  torch::set_num_threads(1);
  sdtrain::TransformConfig config;  // the recipe's defaults: 512, bicubic, random crop, flip
  double checksum = 0;
  std::uint64_t seed = 0;
  double best = 1e30;
  double best_decode = 0;
  for (int pass = 0; pass < passes; ++pass) {
    double decode_seconds = 0;
    const auto start = std::chrono::steady_clock::now();
    for (const std::string& file : files) {
      const auto t0 = std::chrono::steady_clock::now();
      const sdtrain::Image image = sdtrain::read_image_file(file, 89478485);
      decode_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const torch::Tensor tensor = sdtrain::apply_transforms(image, config, seed++);
      checksum += tensor.data_ptr<float>()[0];
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (seconds < best) {
      best = seconds;
      best_decode = decode_seconds;
    }
  }
  std::printf("images %zu\nimages_per_s %.2f\ndecode_fraction %.3f\nchecksum %.3f\n", files.size(),
              files.size() / best, best_decode / best, checksum);
  return 0;
}

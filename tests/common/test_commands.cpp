// The process and file helpers of test_env.h, apart from test_env.cpp so that test programs
// linking libsdtrain without the plugins can use them too.
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <limits>
#include <cstdio>
#include <fstream>

#include "tests/common/test_env.h"

#include "framework/data/image_codec.h"
#include "framework/io/safetensors_reader.h"

namespace sdtrain::test {

std::string write_text(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << text;
  return path.string();
}

void write_captioned_image_folder(const std::filesystem::path& dir, int count, const std::vector<std::string>& captions) {
  std::filesystem::create_directories(dir);
  std::ofstream csv(dir / "metadata.csv");
  csv << "file_name,text\n";
  for (int i = 0; i < count; ++i) {
    Image image;
    image.width = image.height = 16;
    image.channels = 3;
    image.pixels.resize(16 * 16 * 3);
    for (std::size_t p = 0; p < image.pixels.size(); ++p) image.pixels[p] = static_cast<uint8_t>(p * 7 + i * 31);
    write_png_file((dir / ("img" + std::to_string(i) + ".png")).string(), image);
    csv << "img" << i << ".png," << captions[static_cast<std::size_t>(i) % captions.size()] << "\n";
  }
}

std::filesystem::path checkpoint_dir(const std::filesystem::path& output_dir, int step) {
  char name[32];
  std::snprintf(name, sizeof(name), "step-%08d", step);
  return output_dir / "checkpoints" / name;
}

void expect_same_tensors(const std::filesystem::path& a, const std::filesystem::path& b, double tolerance) {
  SafetensorsReader left(a.string());
  SafetensorsReader right(b.string());
  ASSERT_EQ(left.names(), right.names());
  for (const auto& name : left.names()) {
    const torch::Tensor x = left.tensor(name);
    const torch::Tensor y = right.tensor(name);
    if (tolerance == 0) {
      EXPECT_TRUE(torch::equal(x, y)) << name;
      continue;
    }
    const double diff = (x - y).abs().max().item<double>();
    EXPECT_LE(diff, tolerance * y.abs().max().item<double>()) << name << " max diff " << diff;
  }
}

double psnr(const Image& a, const Image& b) {
  EXPECT_EQ(a.pixels.size(), b.pixels.size());
  double squared = 0;
  for (std::size_t i = 0; i < a.pixels.size() && i < b.pixels.size(); ++i) {
    const double d = double(a.pixels[i]) - double(b.pixels[i]);
    squared += d * d;
  }
  const double mse = squared / double(a.pixels.size());
  return mse == 0 ? std::numeric_limits<double>::infinity() : 10 * std::log10(255.0 * 255.0 / mse);
}

int run_command(const std::string& command, std::string* output) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  std::array<char, 4096> buffer;
  output->clear();
  while (std::size_t n = fread(buffer.data(), 1, buffer.size(), pipe)) output->append(buffer.data(), n);
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string mpirun(int ranks, const std::vector<std::string>& env) {
  std::string command = "mpirun -np " + std::to_string(ranks) + " --oversubscribe --bind-to none -x OMP_NUM_THREADS=1";
  if (geteuid() == 0) command += " --allow-run-as-root";
  for (const auto& item : env) command += " -x " + item;
  return command;
}

ProcessGroup& process_group() {
  static ProcessGroup group;
  return group;
}

}  // namespace sdtrain::test

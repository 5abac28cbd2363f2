// sddemodata: writes a small captioned image folder (the Hugging Face imagefolder layout that the
// image_folder dataset reads) of coloured shapes, for demos, smoke tests and CI.
//
//   sddemodata --out data/shapes --count 64 --size 64 --seed 0
//
// writes data/shapes/metadata.csv (file_name,text) and data/shapes/images/000000.png ... The
// folder is built as <out>.tmp and renamed into place, so a reader never sees half a data set.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>

#include <boost/program_options.hpp>

#include "framework/data/image_codec.h"
#include "framework/io/atomic_file.h"
#include "framework/util/file_util.h"
#include "sdtrain/errors.h"
#include "tools/sddemodata/demo_shapes.h"

namespace fs = std::filesystem;
namespace po = boost::program_options;

namespace {

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

int run(int argc, char** argv) {
  std::string out;
  long long count = 0;
  int size = 0;
  unsigned long long seed = 0;
  po::options_description options("sddemodata: write a captioned demo image folder of coloured shapes");
  options.add_options()("help,h", "show this help")(
      "out", po::value<std::string>(&out)->required(), "output folder (must not exist unless --force)")(
      "count", po::value<long long>(&count)->default_value(64), "number of images")(
      "size", po::value<int>(&size)->default_value(64), "image width and height in pixels (8-4096)")(
      "seed", po::value<unsigned long long>(&seed)->default_value(0), "random seed (same seed, same images)")(
      "force", "replace the output folder if it exists");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, options), vm);
    if (vm.count("help")) {
      std::cout << options << "\n";
      return 0;
    }
    po::notify(vm);
  } catch (const po::error& error) {
    std::cerr << "sddemodata: " << error.what() << "\n(see sddemodata --help)\n";
    return 2;
  }
  if (count < 1) {
    std::cerr << "sddemodata: --count must be >= 1, got " << count << "\n";
    return 2;
  }
  if (size < 8 || size > 4096) {
    std::cerr << "sddemodata: --size must be in 8..4096, got " << size << "\n";
    return 2;
  }
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  const fs::path target(out);
  const bool force = vm.count("force") > 0;
  if (fs::exists(target) && !force) {
    std::cerr << "sddemodata: " << out << " already exists (use --force to replace it)\n";
    return 2;
  }
  if (std::string error; !sdtrain::folder_is_creatable(target.parent_path().string(), error)) {
    std::cerr << "sddemodata: --out " << out << ": cannot write there: " << error << "\n";
    return 2;
  }
  const fs::path temp(out + ".tmp");
  fs::remove_all(temp);
  fs::create_directories(temp / "images");
  std::string metadata = "file_name,text\n";
  for (long long i = 0; i < count; ++i) {
    const sdtrain::DemoShape demo = sdtrain::make_demo_shape(seed, static_cast<std::uint64_t>(i), size);
    char name[32];
    std::snprintf(name, sizeof(name), "images/%06lld.png", i);
    sdtrain::write_png_file((temp / name).string(), demo.image, {{"Description", demo.caption}});
    metadata += csv_field(name) + "," + csv_field(demo.caption) + "\n";
  }
  sdtrain::write_file_atomic((temp / "metadata.csv").string(), metadata);
  if (fs::exists(target)) {
    const fs::path old(out + ".old");
    fs::remove_all(old);
    fs::rename(target, old);
    fs::rename(temp, target);
    fs::remove_all(old);
  } else {
    fs::rename(temp, target);
  }
  std::cout << "sddemodata: wrote " << count << " images of " << size << "x" << size << " and metadata.csv to "
            << out << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& error) {
    std::cerr << "sddemodata: error: " << error.what() << "\n";
    return 1;
  }
}

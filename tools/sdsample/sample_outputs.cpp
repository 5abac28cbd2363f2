#include "tools/sdsample/sample_outputs.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <regex>
#include <sstream>
#include <system_error>

#include "framework/data/image_codec.h"
#include "sdtrain/errors.h"

namespace fs = std::filesystem;

namespace sdtrain {
namespace {

/// One more than the highest number among files named like `pattern` (e.g. 00012.png) in `dir`.
int next_number(const fs::path& dir, const std::regex& pattern) {
  int next = 0;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    std::smatch match;
    const std::string name = entry.path().filename().string();
    if (std::regex_match(name, match, pattern)) next = std::max(next, std::stoi(match[1].str()) + 1);
  }
  return next;
}

std::string numbered(const char* format, int number) {
  char name[32];
  std::snprintf(name, sizeof(name), format, number);
  return name;
}

std::string format_number(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

}  // namespace

std::vector<std::pair<std::string, std::string>> sample_png_text(const SampleRequest& request, const std::string& prompt,
                                                                 const std::string& model) {
  const std::string size = std::to_string(request.width) + "x" + std::to_string(request.height);
  std::string parameters = prompt + "\n";
  if (!request.negative_prompt.empty()) parameters += "Negative prompt: " + request.negative_prompt + "\n";
  parameters += "Steps: " + std::to_string(request.steps) + ", Sampler: " + request.sampler +
                ", CFG scale: " + format_number(request.guidance_scale) + ", Seed: " + std::to_string(request.seed) +
                ", Size: " + size;
  if (request.guidance_rescale > 0) parameters += ", Guidance rescale: " + format_number(request.guidance_rescale);
  return {{"parameters", parameters},
          {"prompt", prompt},
          {"negative_prompt", request.negative_prompt},
          {"seed", std::to_string(request.seed)},
          {"sampler", request.sampler},
          {"steps", std::to_string(request.steps)},
          {"scale", format_number(request.guidance_scale)},
          {"size", size},
          {"model", model}};
}

SampleWriter::SampleWriter(const std::string& outdir) : outdir_(outdir) {
  std::error_code error;
  fs::create_directories(fs::path(outdir) / "samples", error);
  if (error) throw DataError(outdir + ": cannot create the output folder: " + error.message());
  next_sample_ = next_number(fs::path(outdir) / "samples", std::regex(R"((\d{5,})\.png)"));
  next_grid_ = next_number(outdir, std::regex(R"(grid-(\d{4,})\.png)"));
}

std::string SampleWriter::write_sample(const Image& image, const std::vector<std::pair<std::string, std::string>>& text) {
  const std::string path = (fs::path(outdir_) / "samples" / numbered("%05d.png", next_sample_++)).string();
  write_png_file(path, image, text);
  return path;
}

std::string SampleWriter::write_grid(const Image& grid, const std::vector<std::pair<std::string, std::string>>& text) {
  const std::string path = (fs::path(outdir_) / numbered("grid-%04d.png", next_grid_++)).string();
  write_png_file(path, grid, text);
  return path;
}

}  // namespace sdtrain

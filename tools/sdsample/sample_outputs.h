#pragma once
/// Where and how `sdsample` writes its images: the CompVis txt2img layout
///   <outdir>/samples/00000.png, 00001.png, ...   one file per image
///   <outdir>/grid-0000.png, ...                   one grid per run
/// numbered after the files already there, so a second run never overwrites the first.
#include <string>
#include <utility>
#include <vector>

#include "sdtrain/image.h"
#include "sdtrain/model.h"

namespace sdtrain {

/// The text chunks stored in each PNG: "prompt", "negative_prompt", "seed", "sampler", "steps",
/// "scale", "size", "model", and "parameters" in the AUTOMATIC1111 style other tools read
/// ("<prompt>\nNegative prompt: ...\nSteps: 50, Sampler: ddim, CFG scale: 7.5, Seed: 42, Size: 512x512").
std::vector<std::pair<std::string, std::string>> sample_png_text(const SampleRequest& request, const std::string& prompt,
                                                                 const std::string& model);

class SampleWriter {
 public:
  /// Creates <outdir>/samples and finds the next free numbers. Throws DataError naming the folder
  /// when it cannot be created.
  explicit SampleWriter(const std::string& outdir);
  /// Writes the next numbered sample (atomically) and returns its path.
  std::string write_sample(const Image& image, const std::vector<std::pair<std::string, std::string>>& text);
  /// Writes the next numbered grid (atomically) and returns its path.
  std::string write_grid(const Image& grid, const std::vector<std::pair<std::string, std::string>>& text);

 private:
  std::string outdir_;
  int next_sample_ = 0;
  int next_grid_ = 0;
};

}  // namespace sdtrain

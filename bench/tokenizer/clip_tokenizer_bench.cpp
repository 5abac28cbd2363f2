// Times sdtrain::ClipTokenizer::tokenize over a corpus (a JSON array of strings) and prints one
// JSON line: {"texts": N, "first_seconds": first pass (empty BPE cache), "seconds": best of the
// following passes, "texts_per_s": N / seconds, "load_seconds": building the vocabulary}.
// Usage: clip_tokenizer_bench <corpus.json> [reps]
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "plugins/models/stable_diffusion/tokenizer/clip_tokenizer.h"

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: clip_tokenizer_bench <corpus.json> [reps]\n";
    return 2;
  }
  std::ifstream in(argv[1]);
  if (!in) {
    std::cerr << "cannot open " << argv[1] << "\n";
    return 2;
  }
  const auto texts = nlohmann::json::parse(in).get<std::vector<std::string>>();
  const int reps = std::max(1, argc > 2 ? std::atoi(argv[2]) : 5);
  auto t0 = std::chrono::steady_clock::now();
  const sdtrain::ClipTokenizer tok;
  const double load_s = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  int64_t checksum = tok.tokenize(texts).sum().item<int64_t>();
  const double first_s = seconds_since(t0);
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    t0 = std::chrono::steady_clock::now();
    checksum += tok.tokenize(texts).sum().item<int64_t>();
    best = std::min(best, seconds_since(t0));
  }
  std::cout << nlohmann::json{{"texts", texts.size()}, {"first_seconds", first_s}, {"seconds", best},
                              {"texts_per_s", static_cast<double>(texts.size()) / best},
                              {"load_seconds", load_s}, {"checksum", checksum}}
                   .dump()
            << std::endl;
  return 0;
}

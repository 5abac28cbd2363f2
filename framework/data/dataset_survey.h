#pragma once
/// What `sddata inspect` and `sddata verify` print about a dataset: from scan_samples(), the
/// sample count, empty captions, unreadable samples (each named with the reason), image sizes and a
/// histogram of aspect ratios.
#include <cstdint>
#include <string>
#include <vector>

#include "framework/data/sample_scan.h"

namespace sdtrain {

/// The aspect-ratio (width / height) classes of the histogram, as [lower, upper) bounds.
struct AspectClass {
  double lower;
  double upper;
  const char* label;
};
const std::vector<AspectClass>& aspect_classes();

struct DatasetSurvey {
  int64_t samples = 0;
  int64_t empty_captions = 0;
  std::vector<const SampleScan*> unreadable;  ///< points into the scans given to survey()
  std::vector<int> widths;                    ///< of the readable samples, sorted
  std::vector<int> heights;                   ///< idem
  std::vector<int64_t> aspect_counts;         ///< per aspect_classes() entry
};

/// Summarises `scans` (which must outlive the result).
DatasetSurvey survey(const std::vector<SampleScan>& scans);

/// The survey as text: counts, the unreadable samples (at most `list_limit`, then how many more),
/// width and height (min / median / max) and the aspect histogram with bars.
std::string format_survey(const DatasetSurvey& survey, std::size_t list_limit = 50);

}  // namespace sdtrain

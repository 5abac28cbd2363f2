#include "framework/data/dataset_survey.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace sdtrain {

const std::vector<AspectClass>& aspect_classes() {
  // Portrait to panorama; the square class holds 9:10 to 10:9.
  static const std::vector<AspectClass> classes = {{0.0, 0.5, "< 0.50"},          {0.5, 0.7, "0.50-0.70"},
                                                   {0.7, 0.9, "0.70-0.90"},       {0.9, 1.0 / 0.9, "0.90-1.11"},
                                                   {1.0 / 0.9, 1.0 / 0.7, "1.11-1.43"}, {1.0 / 0.7, 2.0, "1.43-2.00"},
                                                   {2.0, 1e300, ">= 2.00"}};
  return classes;
}

DatasetSurvey survey(const std::vector<SampleScan>& scans) {
  DatasetSurvey out;
  out.aspect_counts.assign(aspect_classes().size(), 0);
  for (const SampleScan& scan : scans) {
    ++out.samples;
    if (!scan.error.empty()) {
      out.unreadable.push_back(&scan);
      continue;
    }
    if (scan.empty_caption) ++out.empty_captions;
    out.widths.push_back(scan.width);
    out.heights.push_back(scan.height);
    const double aspect = static_cast<double>(scan.width) / scan.height;
    for (std::size_t c = 0; c < aspect_classes().size(); ++c) {
      if (aspect >= aspect_classes()[c].lower && aspect < aspect_classes()[c].upper) ++out.aspect_counts[c];
    }
  }
  std::sort(out.widths.begin(), out.widths.end());
  std::sort(out.heights.begin(), out.heights.end());
  return out;
}

namespace {
std::string min_median_max(const std::vector<int>& sorted) {
  if (sorted.empty()) return "-";
  return std::to_string(sorted.front()) + " / " + std::to_string(sorted[sorted.size() / 2]) + " / " +
         std::to_string(sorted.back());
}
}  // namespace

std::string format_survey(const DatasetSurvey& survey, std::size_t list_limit) {
  std::ostringstream out;
  const auto readable = static_cast<int64_t>(survey.widths.size());
  out << "samples: " << survey.samples << " (" << readable << " readable, " << survey.unreadable.size()
      << " unreadable)\n";
  out << "empty captions: " << survey.empty_captions << "\n";
  for (std::size_t i = 0; i < survey.unreadable.size() && i < list_limit; ++i) {
    out << "  unreadable " << survey.unreadable[i]->key << ": " << survey.unreadable[i]->error << "\n";
  }
  if (survey.unreadable.size() > list_limit) {
    out << "  ... and " << survey.unreadable.size() - list_limit << " more unreadable\n";
  }
  out << "width  min / median / max: " << min_median_max(survey.widths) << "\n";
  out << "height min / median / max: " << min_median_max(survey.heights) << "\n";
  out << "aspect ratio (width / height):\n";
  const int64_t most = *std::max_element(survey.aspect_counts.begin(), survey.aspect_counts.end());
  for (std::size_t c = 0; c < aspect_classes().size(); ++c) {
    const int64_t count = survey.aspect_counts[c];
    const int bar = most > 0 ? static_cast<int>((40 * count + most - 1) / most) : 0;
    char line[96];
    std::snprintf(line, sizeof line, "  %-12s %8lld  ", aspect_classes()[c].label, static_cast<long long>(count));
    out << line << std::string(static_cast<std::size_t>(bar), '#') << "\n";
  }
  return out.str();
}

}  // namespace sdtrain

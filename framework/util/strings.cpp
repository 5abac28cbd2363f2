#include "framework/util/strings.h"

#include <algorithm>
#include <cstdio>
#include <numeric>

namespace sdtrain {

namespace {

/// The last row of the Levenshtein table turning `a` into prefixes of `b`; with `anywhere`, a
/// match may also start at any position of `b` (semi-global alignment).
std::vector<std::size_t> last_edit_row(std::string_view a, std::string_view b, bool anywhere) {
  std::vector<std::size_t> row(b.size() + 1, 0);
  if (!anywhere) std::iota(row.begin(), row.end(), 0);
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row;
}

}  // namespace

std::size_t edit_distance(std::string_view a, std::string_view b) { return last_edit_row(a, b, false).back(); }

std::size_t substring_edit_distance(std::string_view pattern, std::string_view text) {
  const std::vector<std::size_t> row = last_edit_row(pattern, text, true);
  return *std::min_element(row.begin(), row.end());  // ... and end anywhere
}

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_distance = std::max<std::size_t>(2, word.size() / 3) + 1;
  for (const auto& candidate : candidates) {
    const std::size_t distance = edit_distance(word, candidate);
    if (distance < best_distance) {
      best_distance = distance;
      best = candidate;
    }
  }
  return best;
}

std::string join(const std::vector<std::string>& parts, const std::string& separator) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i) out += separator;
    out += parts[i];
  }
  return out;
}

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts(1);
  for (char c : text) {
    if (c == separator) {
      parts.emplace_back();
    } else {
      parts.back() += c;
    }
  }
  return parts;
}

bool starts_with(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

bool ends_with(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

std::string trim(std::string_view text) {
  const char* space = " \t\n\r\f\v";
  const auto first = text.find_first_not_of(space);
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(space);
  return std::string(text.substr(first, last - first + 1));
}

std::string round_trip_decimal(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.17g", value);
  return text;
}

}  // namespace sdtrain

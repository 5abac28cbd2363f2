#include "plugins/datasets/shard_files.h"

#include <algorithm>
#include <filesystem>
#include <regex>
#include <set>

#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

namespace fs = std::filesystem;

/// Where the group opened at `open` closes, or npos.
std::size_t matching_brace(const std::string& text, std::size_t open) {
  int depth = 0;
  for (std::size_t i = open; i < text.size(); ++i) {
    if (text[i] == '{') ++depth;
    if (text[i] == '}' && --depth == 0) return i;
  }
  return std::string::npos;
}

/// The alternatives of a group's inside: its comma-separated parts (commas inside nested groups
/// do not split), or the numbers of a range "a..b".
std::vector<std::string> alternatives(const std::string& inside, const std::string& field) {
  static const std::regex range(R"((-?\d+)\.\.(-?\d+))");
  std::smatch match;
  if (std::regex_match(inside, match, range)) {
    const std::string first = match[1];
    const std::string last = match[2];
    const long long from = std::stoll(first);
    const long long to = std::stoll(last);
    if (std::llabs(to - from) > 10'000'000) {
      throw ConfigError(field + ": the range {" + inside + "} names more than 10 million shards");
    }
    const bool padded = (first.size() > 1 && first[0] == '0') || (last.size() > 1 && last[0] == '0');
    const std::size_t width = padded ? std::max(first.size(), last.size()) : 0;
    std::vector<std::string> numbers;
    const long long step = from <= to ? 1 : -1;
    for (long long n = from;; n += step) {
      std::string digits = std::to_string(std::llabs(n));
      const std::size_t sign = n < 0 ? 1 : 0;
      if (digits.size() + sign < width) digits.insert(0, width - digits.size() - sign, '0');
      numbers.push_back((n < 0 ? "-" : "") + digits);
      if (n == to) break;
    }
    return numbers;
  }
  std::vector<std::string> parts;
  int depth = 0;
  std::string part;
  for (char c : inside) {
    if (c == ',' && depth == 0) {
      parts.push_back(part);
      part.clear();
      continue;
    }
    if (c == '{') ++depth;
    if (c == '}') --depth;
    part += c;
  }
  parts.push_back(part);
  return parts;
}

}  // namespace

std::vector<std::string> expand_braces(const std::string& pattern, const std::string& field) {
  const std::size_t open = pattern.find('{');
  if (open == std::string::npos) {
    if (pattern.find('}') != std::string::npos) throw ConfigError(field + ": unbalanced '}' in '" + pattern + "'");
    return {pattern};
  }
  const std::size_t close = matching_brace(pattern, open);
  if (close == std::string::npos) throw ConfigError(field + ": unbalanced '{' in '" + pattern + "'");
  const std::string prefix = pattern.substr(0, open);
  const std::string inside = pattern.substr(open + 1, close - open - 1);
  const std::vector<std::string> rest = expand_braces(pattern.substr(close + 1), field);
  std::vector<std::string> parts = alternatives(inside, field);
  // A group with one part and no range is literal text, as braceexpand keeps it.
  const bool literal = parts.size() == 1 && parts[0] == inside && inside.find("..") == std::string::npos;
  if (literal) parts = {"{" + inside + "}"};
  std::vector<std::string> out;
  for (const std::string& part : parts) {
    for (const std::string& middle : literal ? std::vector<std::string>{part} : expand_braces(part, field)) {
      for (const std::string& tail : rest) out.push_back(prefix + middle + tail);
    }
  }
  return out;
}

std::vector<std::string> resolve_shard_files(const std::vector<std::string>& patterns, const std::string& extension,
                                             const PluginContext& context, const std::string& field) {
  if (patterns.empty()) {
    throw ConfigError(field + ": required (the shard files, e.g. 'train-{00000..00009}" + extension + "')");
  }
  std::vector<std::string> files;
  std::set<std::string> seen;
  auto add = [&](const fs::path& file) {
    if (!seen.insert(file.string()).second) throw ConfigError(field + ": " + file.string() + " is named twice");
    files.push_back(file.string());
  };
  for (const std::string& pattern : patterns) {
    for (const std::string& name : expand_braces(pattern, field)) {
      fs::path path(name);
      if (path.is_relative()) path = fs::path(context.base_dir) / path;
      path = path.lexically_normal();
      std::error_code error;
      if (fs::is_directory(path, error)) {
        std::vector<fs::path> inside;
        for (const fs::directory_entry& entry : fs::directory_iterator(path, error)) {
          if (entry.is_regular_file(error) && entry.path().extension() == extension) inside.push_back(entry.path());
        }
        if (error) throw ConfigError(field + ": cannot list " + path.string() + ": " + error.message());
        if (inside.empty()) throw ConfigError(field + ": no " + extension + " files in the folder " + path.string());
        std::sort(inside.begin(), inside.end());
        for (const fs::path& file : inside) add(file);
      } else if (fs::is_regular_file(path, error)) {
        add(path);
      } else {
        throw ConfigError(field + ": file not found: " + path.string() +
                          (name == pattern ? "" : " (from the pattern '" + pattern + "')"));
      }
    }
  }
  return files;
}

}  // namespace sdtrain

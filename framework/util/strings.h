#pragma once
/// Small string helpers used in error messages and parsing.
#include <string>
#include <string_view>
#include <vector>

namespace sdtrain {

/// Levenshtein distance between a and b.
std::size_t edit_distance(std::string_view a, std::string_view b);
/// The fewest edits that turn `pattern` into some substring of `text`: small when `text` contains
/// something close to `pattern` (e.g. a layer path and a mistyped part of it).
std::size_t substring_edit_distance(std::string_view pattern, std::string_view text);

/// The candidate closest to `word` by edit distance if it is plausibly a typo (distance at most
/// max(2, |word| / 3)); otherwise "".
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

/// "a, b, c".
std::string join(const std::vector<std::string>& parts, const std::string& separator = ", ");

/// Splits on `separator`, keeping empty parts.
std::vector<std::string> split(const std::string& text, char separator);

/// `text` without leading and trailing ASCII whitespace (space, \t, \n, \r, \f, \v).
std::string trim(std::string_view text);

/// `value` with 17 significant digits ("%.17g"): parsing the text gives the same double back, so
/// logs that tests and users compare exactly can be compared exactly.
std::string round_trip_decimal(double value);

/// True if `text` starts with `prefix` / ends with `suffix`.
bool starts_with(std::string_view text, std::string_view prefix);
bool ends_with(std::string_view text, std::string_view suffix);

}  // namespace sdtrain

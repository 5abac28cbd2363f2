#pragma once
/// The regular expressions of ftfy's mojibake repair (ftfy 6.x, Apache-2.0, reimplemented from
/// its source), matched over code points and bytes: ftfy.badness.BADNESS_RE (the is_bad
/// heuristic), ftfy.chardata.UTF8_DETECTOR_RE, ALTERED_UTF8_RE and LOSSY_UTF8_RE, and
/// ftfy.fixes.A_GRAVE_WORD_RE.
///
/// std::regex has no Unicode classes, so gen_mojibake_tables.py runs Python's own regex parser
/// over ftfy's compiled patterns and writes each one as its list of fixed-length alternatives
/// (sequences of character classes, one class per character, '^' as a flag), in the order
/// Python's backtracking engine tries them (mojibake_patterns.inc). The matcher here tries those
/// sequences at each position, so it finds the same matches as Python's re: for a search, any
/// sequence matching anywhere; for a substitution, leftmost position first, and at a position
/// the first sequence in order. The classes' \s and \w are Python's Unicode ones (str.isspace;
/// letters, numbers and '_'). The generator stops if a pattern takes a shape this matcher does
/// not implement (repeats other than fixed counts, look-around other than UTF8_DETECTOR_RE's).
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sdtrain::clip_text::mojibake {

/// ftfy.badness.is_bad: BADNESS_RE.search(text) finds something, i.e. the text holds a
/// character sequence that is far likelier mojibake than intended.
bool is_bad(std::u32string_view text);

/// UTF8_DETECTOR_RE.finditer(text): the runs of characters that look like UTF-8 read as a
/// single-byte codec, each not preceded by a likely continuation character, as [begin, end)
/// pairs left to right, each search starting where the previous run ended. One pass over the
/// text (searching again from each run's end would classify the text once per run).
std::vector<std::pair<size_t, size_t>> utf8_mojibake_runs(std::u32string_view text);

/// ALTERED_UTF8_RE.search(bytes): UTF-8 that would be valid if one space were byte A0.
bool has_altered_utf8(std::string_view bytes);

/// ftfy.fixes.restore_byte_a0: A_GRAVE_WORD_RE's "C3 20" -> "C3 A0 20", then every
/// ALTERED_UTF8_RE match with its spaces turned back into byte A0.
std::string restore_byte_a0(std::string_view bytes);

/// ftfy.fixes.replace_lossy_sequences: every LOSSY_UTF8_RE match (UTF-8 whose lost bytes
/// became 1A or '?') replaced with the UTF-8 of U+FFFD.
std::string replace_lossy_sequences(std::string_view bytes);

}  // namespace sdtrain::clip_text::mojibake

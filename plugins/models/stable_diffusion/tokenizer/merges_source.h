#pragma once
/// Where ClipTokenizer's merges text comes from: the copy of bpe_simple_vocab_16e6.txt.gz that
/// the build embeds into the library, or a file.
#include <string>
#include <string_view>

namespace sdtrain::clip_text {

/// The embedded bpe_simple_vocab_16e6.txt.gz, still compressed (generated at build time).
std::string_view embedded_merges_gz();

/// Decompresses gzip data with zlib; data without the gzip magic is returned unchanged.
/// Throws FormatError naming `source` on corrupt or truncated data.
std::string gunzip(std::string_view data, const std::string& source);

/// Reads (read_file) and decompresses a merges file. Throws FormatError naming the path.
std::string read_merges_file(const std::string& path);

}  // namespace sdtrain::clip_text

# cmake -DIN=<file> -DOUT=<file.cpp> -P embed_file.cmake
# Writes a C++ source defining sdtrain::clip_text::embedded_merges_gz() over IN's bytes.
file(READ "${IN}" hex HEX)
# 64 bytes per line, each byte as a \xNN escape inside a string literal.
string(REGEX REPLACE "(................................................................................................................................)" "\\1\"\n\"" hex "${hex}")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "\\\\x\\1" hex "${hex}")
get_filename_component(name "${IN}" NAME)
file(WRITE "${OUT}.tmp"
"// Generated from ${name} by embed_file.cmake; do not edit.
#include \"plugins/models/stable_diffusion/tokenizer/merges_source.h\"

namespace sdtrain::clip_text {
namespace {
const char kData[] =
\"${hex}\";
}  // namespace

std::string_view embedded_merges_gz() { return std::string_view(kData, sizeof(kData) - 1); }

}  // namespace sdtrain::clip_text
")
file(RENAME "${OUT}.tmp" "${OUT}")

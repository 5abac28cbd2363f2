#pragma once
/// The codecs of ftfy's mojibake repair (ftfy 6.x, Apache-2.0, reimplemented from its source):
/// the single-byte codecs ftfy re-encodes suspected mojibake with (ftfy.chardata.
/// CHARMAP_ENCODINGS, tables generated from Python's codecs by gen_mojibake_tables.py) and the
/// strict UTF-8 decoders it then tries, including ftfy's "utf-8-variants" (CESU-8 surrogate
/// pairs, Java's C0 80 for U+0000). Text is code points (char32_t), bytes are std::string.
#include <optional>
#include <string>
#include <string_view>

namespace sdtrain::clip_text::mojibake {

/// Number of single-byte codecs, indexed 0..count-1 in the order ftfy tries them.
int charmap_count();

/// True for ftfy's "sloppy" codecs (undefined bytes decode to the same-numbered code point, byte
/// 1A stands for U+FFFD); only those get replace_lossy_sequences.
bool charmap_is_sloppy(int codec);

/// Index of the named codecs the repair plan singles out.
int latin1_codec();
int macroman_codec();

/// text.encode(codec) into `out`; false (out unspecified) when some character is not encodable,
/// which is exactly when ftfy.chardata.possible_encoding(text, codec) is false.
bool charmap_encode(std::u32string_view text, int codec, std::string& out);

/// Byte 0x80..0x9F read as sloppy windows-1252 (ftfy's fix_c1_controls on one C1 character).
char32_t sloppy_windows1252(unsigned char byte);

/// bytes.decode("windows-1252") (strict): nullopt when a byte is undefined there.
std::optional<std::u32string> decode_windows1252(std::string_view bytes);

/// bytes.decode("utf-8") (strict) when `variants` is false, ftfy's bytes.decode("utf-8-variants")
/// when true: nullopt where Python raises UnicodeDecodeError.
std::optional<std::u32string> decode_utf8(std::string_view bytes, bool variants);

}  // namespace sdtrain::clip_text::mojibake

#pragma once
/// ftfy's mojibake repair, ftfy.fix_encoding with its default configuration (ftfy 6.x,
/// Apache-2.0, by Robyn Speer; the algorithm is reimplemented from its source). Mojibake is text
/// that was encoded as UTF-8 and decoded with a single-byte codec ("schÃ¶n" for "schön"). Each
/// step, repeated until nothing changes:
///   1. ASCII text, or text without a likely-mojibake sequence (is_bad), stays as it is.
///   2. For each of ftfy's single-byte codecs in order (latin-1, sloppy windows-1252, -1251,
///      -1250, -1253, -1254, -1257, iso-8859-2, macroman, cp437) that can encode the text: encode
///      it, put back a byte A0 turned into a space (restore_byte_a0; not for macroman), mark
///      lossy UTF-8 sequences as U+FFFD (sloppy codecs only), and decode the bytes as UTF-8
///      (ftfy's "utf-8-variants" when byte ED or C0 occurs). The first codec whose bytes decode
///      gives the result.
///   3. Otherwise fix each UTF-8-looking run on its own that is_bad (decode_inconsistent_utf8).
///   4. Otherwise, latin-1 text is read as windows-1252 when all its bytes are defined there.
///   5. Otherwise C1 controls become their windows-1252 characters (fix_c1_controls).
/// Text that is fine, including legitimate "Ã" or "â€" in ordinary context, is left unchanged.
#include <string>
#include <string_view>

namespace sdtrain::clip_text {

/// ftfy.fix_encoding(text). Pure function; thread-safe.
std::u32string fix_encoding(std::u32string_view text);

}  // namespace sdtrain::clip_text

#include "plugins/models/stable_diffusion/tokenizer/merges_source.h"

#include <zlib.h>

#include "framework/util/file_util.h"
#include "sdtrain/errors.h"

namespace sdtrain::clip_text {

std::string gunzip(std::string_view data, const std::string& source) {
  if (data.size() < 2 || static_cast<unsigned char>(data[0]) != 0x1f ||
      static_cast<unsigned char>(data[1]) != 0x8b) {
    return std::string(data);
  }
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
    throw FormatError("gzip " + source + ": inflateInit2 failed");
  }
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  std::string out;
  char buffer[1 << 16];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    zs.next_out = reinterpret_cast<Bytef*>(buffer);
    zs.avail_out = sizeof(buffer);
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      const std::string msg = zs.msg ? zs.msg : ("zlib error " + std::to_string(rc));
      inflateEnd(&zs);
      throw FormatError("gzip " + source + ": corrupt or truncated data (" + msg + ")");
    }
    out.append(buffer, sizeof(buffer) - zs.avail_out);
    if (rc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
      inflateEnd(&zs);
      throw FormatError("gzip " + source + ": truncated data");
    }
  }
  inflateEnd(&zs);
  return out;
}

std::string read_merges_file(const std::string& path) {
  return gunzip(read_file<FormatError>(path), path);
}

}  // namespace sdtrain::clip_text

#include "framework/io/zip_writer.h"

#include <zlib.h>

#include <algorithm>

#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

constexpr std::uint64_t kMax32 = 0xFFFFFFFFu;
constexpr std::uint16_t kDosDate = (0 << 9) | (1 << 5) | 1;  // 1980-01-01, like torch's writer

class Bytes {
 public:
  Bytes& u16(std::uint64_t v) { return put(v, 2); }
  Bytes& u32(std::uint64_t v) { return put(v, 4); }
  Bytes& u64(std::uint64_t v) { return put(v, 8); }
  Bytes& str(const std::string& s) { data_ += s; return *this; }
  const std::string& data() const { return data_; }

 private:
  Bytes& put(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) data_.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
    return *this;
  }
  std::string data_;
};

std::uint32_t crc_of(const void* data, std::uint64_t size) {
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* p = static_cast<const Bytef*>(data);
  while (size > 0) {
    const uInt chunk = static_cast<uInt>(std::min<std::uint64_t>(size, 1u << 30));
    crc = crc32(crc, p, chunk);
    p += chunk;
    size -= chunk;
  }
  return static_cast<std::uint32_t>(crc);
}

}  // namespace

void ZipWriter::add(const std::string& name, const void* data, std::uint64_t size) {
  if (finished_) throw FormatError(out_.path() + ": zip entry added after finish");
  if (name.size() > 0xFFFF) throw FormatError(out_.path() + ": zip entry name too long");
  Record r{name, out_.offset(), size, crc_of(data, size)};
  const bool zip64 = size >= kMax32;
  Bytes h;
  h.u32(0x04034b50).u16(zip64 ? 45 : 20).u16(0).u16(0).u16(0).u16(kDosDate).u32(r.crc)
      .u32(zip64 ? kMax32 : size).u32(zip64 ? kMax32 : size).u16(name.size());
  Bytes extra;
  if (zip64) extra.u16(1).u16(16).u64(size).u64(size);
  const std::uint64_t unpadded = r.offset + 30 + name.size() + extra.data().size() + 4;
  const std::uint64_t pad = (kAlignment - unpadded % kAlignment) % kAlignment;
  extra.u16(0x4246).u16(pad).str(std::string(pad, 'Z'));  // "FB" padding field
  h.u16(extra.data().size()).str(name).str(extra.data());
  out_.write(h.data().data(), h.data().size());
  out_.write(data, size);
  records_.push_back(std::move(r));
}

void ZipWriter::finish() {
  if (finished_) return;
  finished_ = true;
  const std::uint64_t cd_start = out_.offset();
  for (const Record& r : records_) {
    Bytes extra;
    const bool big_size = r.size >= kMax32;
    const bool big_offset = r.offset >= kMax32;
    if (big_size || big_offset) {
      extra.u16(1).u16((big_size ? 16 : 0) + (big_offset ? 8 : 0));
      if (big_size) extra.u64(r.size).u64(r.size);
      if (big_offset) extra.u64(r.offset);
    }
    Bytes c;
    c.u32(0x02014b50).u16(big_size || big_offset ? 45 : 20).u16(big_size || big_offset ? 45 : 20).u16(0).u16(0)
        .u16(0).u16(kDosDate).u32(r.crc).u32(big_size ? kMax32 : r.size).u32(big_size ? kMax32 : r.size)
        .u16(r.name.size()).u16(extra.data().size()).u16(0).u16(0).u16(0).u32(0)
        .u32(big_offset ? kMax32 : r.offset).str(r.name).str(extra.data());
    out_.write(c.data().data(), c.data().size());
  }
  const std::uint64_t cd_size = out_.offset() - cd_start;
  const std::uint64_t count = records_.size();
  const bool zip64 = count >= 0xFFFF || cd_start >= kMax32 || cd_size >= kMax32;
  Bytes end;
  if (zip64) {
    const std::uint64_t z64 = out_.offset();
    end.u32(0x06064b50).u64(44).u16(45).u16(45).u32(0).u32(0).u64(count).u64(count).u64(cd_size).u64(cd_start);
    end.u32(0x07064b50).u32(0).u64(z64).u32(1);
  }
  end.u32(0x06054b50).u16(0).u16(0).u16(zip64 ? 0xFFFF : count).u16(zip64 ? 0xFFFF : count)
      .u32(zip64 ? kMax32 : cd_size).u32(zip64 ? kMax32 : cd_start).u16(0);
  out_.write(end.data().data(), end.data().size());
}

}  // namespace sdtrain

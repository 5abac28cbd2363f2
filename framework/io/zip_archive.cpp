#include "framework/io/zip_archive.h"

#include <zip.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

std::uint64_t le(const std::uint8_t* p, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

ZipArchive::ZipArchive(const std::string& path) : file_(MappedFile::open(path)) {
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* source = zip_source_buffer_create(file_->data(), file_->size(), 0, &error);
  if (source == nullptr) {
    const std::string text = zip_error_strerror(&error);
    zip_error_fini(&error);
    throw FormatError(path + ": cannot read as zip: " + text);
  }
  archive_ = zip_open_from_source(source, ZIP_RDONLY | ZIP_CHECKCONS, &error);
  if (archive_ == nullptr) {
    const std::string text = zip_error_strerror(&error);
    zip_error_fini(&error);
    zip_source_free(source);
    throw FormatError(path + ": not a valid zip archive: " + text);
  }
  zip_error_fini(&error);
  // A constructor that throws runs no destructor: the archive is discarded here (it leaked once,
  // found by the ckpt fuzzer on a zip with a duplicate entry).
  try {
    index_entries(path);
  } catch (...) {
    zip_discard(archive_);
    archive_ = nullptr;
    throw;
  }
}

void ZipArchive::check_entry(const std::string& path, const std::string& name, const zip_stat_t& st) const {
  const auto bad = [&](const std::string& what) {
    throw FormatError(path + ": zip entry '" + name + "' " + what);
  };
  // What torch.load's reader takes: stored or deflated, unencrypted. Anything else would be
  // inflated into a buffer of the size the entry declares, allocated before a byte is read (an
  // encrypted entry declaring 4 GB, found by the ckpt fuzzer).
  if (st.encryption_method != ZIP_EM_NONE) bad("is encrypted");
  if (st.comp_method != ZIP_CM_STORE && st.comp_method != ZIP_CM_DEFLATE) {
    bad("uses compression method " + std::to_string(st.comp_method) + "; torch.save files are stored or deflated");
  }
  if (st.comp_size > file_->size()) {
    bad("claims " + std::to_string(st.comp_size) + " compressed bytes, more than the file holds");
  }
  // A stored entry's two sizes must agree, which libzip's consistency check already ensures;
  // deflate expands at most 1032:1 (258-byte matches coded in 2 bits).
  constexpr std::uint64_t kMaxDeflateRatio = 1032;
  if (st.comp_method == ZIP_CM_DEFLATE && st.size / kMaxDeflateRatio > st.comp_size) {
    bad("declares " + std::to_string(st.size) + " bytes from " + std::to_string(st.comp_size) +
        " deflated, more than deflate can produce");
  }
}

void ZipArchive::index_entries(const std::string& path) {
  const zip_int64_t count = zip_get_num_entries(archive_, 0);
  for (zip_int64_t i = 0; i < count; ++i) {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(archive_, static_cast<zip_uint64_t>(i), 0, &st) != 0) {
      throw FormatError(path + ": cannot stat zip entry " + std::to_string(i) + ": " + zip_strerror(archive_));
    }
    const std::string name = st.name != nullptr ? st.name : "";
    if (index_.count(name) != 0) throw FormatError(path + ": duplicate zip entry '" + name + "'");
    check_entry(path, name, st);
    Info info;
    info.libzip_index = static_cast<std::uint64_t>(i);
    info.size = st.size;
    info.compressed_size = st.comp_size;
    info.crc = st.crc;
    info.stored = st.comp_method == ZIP_CM_STORE && (st.encryption_method == ZIP_EM_NONE);
    names_.push_back(name);
    index_.emplace(name, info);
  }
  locate_stored_data();
}

ZipArchive::~ZipArchive() {
  if (archive_ != nullptr) zip_discard(archive_);
}

// libzip does not expose where an entry's data starts, so walk the central directory (zip64
// aware) for local header offsets, then each local header for its name and extra lengths.
void ZipArchive::locate_stored_data() {
  const std::uint8_t* d = file_->data();
  const std::uint64_t n = file_->size();
  const std::string& p = path();
  auto bad = [&](const std::string& what) { throw FormatError(p + ": zip: " + what); };
  if (n < 22) bad("too small for an end-of-central-directory record");
  std::uint64_t eocd = n - 22;
  const std::uint64_t lowest = n > 22 + 65535 ? n - 22 - 65535 : 0;
  while (le(d + eocd, 4) != 0x06054b50) {
    if (eocd == lowest) bad("no end-of-central-directory record");
    --eocd;
  }
  std::uint64_t entries = le(d + eocd + 10, 2);
  std::uint64_t cd_offset = le(d + eocd + 16, 4);
  if (entries == 0xFFFF || cd_offset == 0xFFFFFFFF) {
    if (eocd < 20 || le(d + eocd - 20, 4) != 0x07064b50) bad("zip64 locator missing");
    const std::uint64_t z64 = le(d + eocd - 20 + 8, 8);
    if (z64 > n - 56 || le(d + z64, 4) != 0x06064b50) bad("zip64 end record missing");
    entries = le(d + z64 + 32, 8);
    cd_offset = le(d + z64 + 48, 8);
  }
  std::uint64_t pos = cd_offset;
  for (std::uint64_t e = 0; e < entries; ++e) {
    if (pos > n - 46 || le(d + pos, 4) != 0x02014b50) bad("central directory entry " + std::to_string(e) + " corrupt");
    std::uint64_t csize = le(d + pos + 20, 4);
    std::uint64_t usize = le(d + pos + 24, 4);
    const std::uint64_t name_len = le(d + pos + 28, 2);
    const std::uint64_t extra_len = le(d + pos + 30, 2);
    const std::uint64_t comment_len = le(d + pos + 32, 2);
    std::uint64_t local = le(d + pos + 42, 4);
    if (pos + 46 + name_len + extra_len + comment_len > n) bad("central directory entry " + std::to_string(e) + " truncated");
    const std::string name(reinterpret_cast<const char*>(d + pos + 46), name_len);
    // Zip64 extended information: only the fields whose 32-bit value is saturated, in order.
    const std::uint8_t* x = d + pos + 46 + name_len;
    const std::uint8_t* x_end = x + extra_len;
    while (x + 4 <= x_end) {
      const std::uint64_t id = le(x, 2), len = le(x + 2, 2);
      if (x + 4 + len > x_end) break;
      if (id == 1) {
        const std::uint8_t* f = x + 4;
        const std::uint8_t* f_end = f + len;
        if (usize == 0xFFFFFFFF && f + 8 <= f_end) { usize = le(f, 8); f += 8; }
        if (csize == 0xFFFFFFFF && f + 8 <= f_end) { csize = le(f, 8); f += 8; }
        if (local == 0xFFFFFFFF && f + 8 <= f_end) { local = le(f, 8); f += 8; }
      }
      x += 4 + len;
    }
    pos += 46 + name_len + extra_len + comment_len;
    auto it = index_.find(name);
    if (it == index_.end()) bad("entry '" + name + "' unknown to libzip");
    Info& info = it->second;
    if (info.size != usize || info.compressed_size != csize) bad("entry '" + name + "' sizes disagree");
    if (!info.stored) continue;
    if (local > n - 30 || le(d + local, 4) != 0x04034b50) bad("local header of '" + name + "' corrupt");
    const std::uint64_t data = local + 30 + le(d + local + 26, 2) + le(d + local + 28, 2);
    if (data > n || info.size > n - data) bad("data of '" + name + "' runs past the end of the file");
    info.data_offset = data;
    info.located = true;
  }
  // An entry libzip lists that this walk did not reach (a central directory whose entry count
  // disagrees with libzip's) has no checked position: reading it would run past the mapping (found
  // by the ckpt fuzzer).
  for (const auto& [name, info] : index_) {
    if (info.stored && !info.located) bad("entry '" + name + "' missing from the central directory");
  }
}

const ZipArchive::Info& ZipArchive::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw FormatError(path() + ": zip entry '" + name + "' missing");
  return it->second;
}

std::uint64_t ZipArchive::size(const std::string& name) const { return info(name).size; }

ZipArchive::Entry ZipArchive::read(const std::string& name, bool verify_crc) const {
  const Info& i = info(name);
  Entry entry;
  entry.size = i.size;
  if (i.stored) {
    entry.data = file_->mutable_data() + i.data_offset;
    entry.owner = file_->hold(entry.data, i.size);
  } else {
    auto buffer = std::shared_ptr<std::uint8_t>(new std::uint8_t[i.size > 0 ? i.size : 1], std::default_delete<std::uint8_t[]>());
    std::lock_guard<std::mutex> lock(mutex_);
    zip_file_t* f = zip_fopen_index(archive_, i.libzip_index, 0);
    if (f == nullptr) throw FormatError(path() + ": cannot open zip entry '" + name + "': " + zip_strerror(archive_));
    std::uint64_t done = 0;
    while (done < i.size) {
      const zip_int64_t got = zip_fread(f, buffer.get() + done, i.size - done);
      if (got <= 0) {
        const std::string text = zip_file_strerror(f);
        zip_fclose(f);
        throw FormatError(path() + ": cannot read zip entry '" + name + "': " + text);
      }
      done += static_cast<std::uint64_t>(got);
    }
    zip_fclose(f);
    entry.data = buffer.get();
    entry.owner = buffer;
    verify_crc = false;  // libzip checks the CRC of what it inflates
  }
  if (verify_crc) {
    uLong crc = crc32(0L, Z_NULL, 0);
    std::uint64_t done = 0;
    while (done < entry.size) {
      const uInt chunk = static_cast<uInt>(std::min<std::uint64_t>(entry.size - done, 1u << 30));
      crc = crc32(crc, entry.data + done, chunk);
      done += chunk;
    }
    if (static_cast<std::uint32_t>(crc) != i.crc) throw FormatError(path() + ": zip entry '" + name + "' fails its CRC check");
  }
  return entry;
}

}  // namespace sdtrain

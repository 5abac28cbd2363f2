#include "plugins/datasets/tar_shard.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <regex>

#include "framework/io/atomic_file.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

using ArchivePtr = std::unique_ptr<archive, int (*)(archive*)>;

std::string archive_message(archive* a) {
  const char* message = archive_error_string(a);
  return message ? message : "unknown libarchive error";
}

/// Whether a member name leaves the shard when used as a path: absolute, or a ".." component.
bool climbs_out(const std::string& name) {
  if (!name.empty() && name[0] == '/') return true;
  const std::filesystem::path path(name);
  for (const auto& part : path) {
    if (part == "..") return true;
  }
  return false;
}

}  // namespace

TarListing list_tar(const std::string& path) {
  ArchivePtr a(archive_read_new(), archive_read_free);
  archive_read_support_format_tar(a.get());
  archive_read_support_format_gnutar(a.get());
  archive_read_support_filter_all(a.get());  // to name a compressed shard instead of "not a tar"
  TarListing listing;
  std::error_code size_error;
  listing.file_size = static_cast<int64_t>(std::filesystem::file_size(path, size_error));
  if (size_error) throw DataError(path + ": cannot read the shard: " + size_error.message(), path);
  if (archive_read_open_filename(a.get(), path.c_str(), 1 << 16) != ARCHIVE_OK) {
    throw DataError(path + ": cannot read the shard: " + archive_message(a.get()), path);
  }
  for (bool first = true;; first = false) {
    archive_entry* entry = nullptr;
    const int64_t header_at = archive_filter_bytes(a.get(), -1);
    const int status = archive_read_next_header(a.get(), &entry);
    if (status == ARCHIVE_EOF) break;
    if (status < ARCHIVE_WARN) {
      if (first) throw DataError(path + ": not a tar shard: " + archive_message(a.get()), path);
      listing.error = archive_message(a.get()) + " (reading the header at byte " + std::to_string(header_at) + ")";
      break;
    }
    if (first && archive_filter_count(a.get()) > 1) {
      throw DataError(path + ": the shard is compressed (" + archive_filter_name(a.get(), 0) +
                          "); only uncompressed tar shards can be read by offset: decompress it (images are "
                          "compressed already, so WebDataset shards are usually plain .tar)",
                      path);
    }
    if (archive_entry_filetype(entry) != AE_IFREG || archive_entry_hardlink(entry) != nullptr) continue;
    const char* name = archive_entry_pathname(entry);
    TarMember member;
    member.name = name ? name : "";
    // After the header, libarchive has consumed exactly up to the member's data.
    member.offset = archive_filter_bytes(a.get(), -1);
    member.size = archive_entry_size(entry);
    if (archive_entry_sparse_count(entry) > 0) {
      listing.error = "member '" + member.name + "' is a sparse file, which a shard cannot hold (at byte " +
                      std::to_string(member.offset) + ")";
      break;
    }
    if (member.offset + member.size > listing.file_size) {
      listing.error = "member '" + member.name + "' needs " + std::to_string(member.size) + " bytes from byte " +
                      std::to_string(member.offset) + " but the file ends at byte " +
                      std::to_string(listing.file_size) + " (truncated)";
      listing.broken_member = member.name;
      break;
    }
    listing.members.push_back(std::move(member));
  }
  return listing;
}

std::vector<std::string> read_members(const std::string& path, const std::vector<const TarMember*>& members) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw DataError(path + ": cannot open: " + std::strerror(errno), path);
  std::vector<std::string> contents;
  for (const TarMember* member : members) {
    std::string bytes(static_cast<std::size_t>(member->size), '\0');
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t got =
          ::pread(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(member->offset + done));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        const std::string why = got < 0 ? std::strerror(errno) : "the file ends";
        ::close(fd);
        throw DataError(path + ": cannot read " + std::to_string(member->size) + " bytes at byte " +
                            std::to_string(member->offset) + ": " + why,
                        path);
      }
      done += static_cast<std::size_t>(got);
    }
    contents.push_back(std::move(bytes));
  }
  ::close(fd);
  return contents;
}

std::vector<WebDatasetSample> group_webdataset_samples(const TarListing& listing) {
  // webdataset.tariterators: base_plus_ext and the metadata filters, to the letter.
  static const std::regex key_and_suffix(R"(^((?:.*/|)[^.]+)[.]([^/]*)$)");
  static const std::regex metadata(R"(^__[^/]*__($|/))");
  std::vector<WebDatasetSample> samples;
  std::optional<WebDatasetSample> current;
  // Adds a member to the current sample or starts the next; false when WebDataset skips it.
  auto add = [&](const TarMember& member) {
    const std::string& name = member.name;
    if (name.find('/') == std::string::npos && name.size() >= 4 && name.starts_with("__") && name.ends_with("__")) {
      return false;
    }
    if (std::regex_search(name, metadata)) return false;
    std::smatch match;
    if (!std::regex_match(name, match, key_and_suffix)) return false;
    const std::string key = match[1];
    std::string suffix = match[2];
    for (char& c : suffix) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!current || current->key != key) {
      if (current) samples.push_back(std::move(*current));
      current.emplace();
      current->key = key;
    }
    if (current->problem.empty() && climbs_out(name)) {
      current->problem = "member '" + name + "' is an absolute path or climbs out of the shard with '..'";
    }
    for (const auto& part : current->parts) {
      if (part.first == suffix && current->problem.empty()) {
        current->problem = "member '" + name + "': a second '" + suffix + "' for the key '" + key + "'";
      }
    }
    current->parts.emplace_back(suffix, member);
    return true;
  };
  for (const TarMember& member : listing.members) add(member);
  if (!listing.error.empty()) {
    TarMember broken;
    broken.name = listing.broken_member;
    if (!broken.name.empty() && add(broken)) {
      current->problem = "the shard breaks at this sample: " + listing.error;
    } else if (current) {
      current->problem = "the shard breaks after this sample, whose later members may be lost: " + listing.error;
    }
  }
  if (current) samples.push_back(std::move(*current));
  return samples;
}

struct TarShardWriter::State {
  explicit State(const std::string& path, bool overwrite) : file(path, overwrite) {}
  AtomicFile file;
  ArchivePtr archive{archive_write_new(), archive_write_free};
  std::string error;  ///< an AtomicFile error raised inside libarchive's callback
};

TarShardWriter::TarShardWriter(const std::string& path, bool overwrite) {
  try {
    state_ = std::make_unique<State>(path, overwrite);
  } catch (const std::exception& e) {
    throw DataError(path + ": cannot write the shard: " + e.what(), path);
  }
  // libarchive's write callback, defined here for access to State.
  auto write_to_atomic_file = [](archive*, void* client, const void* buffer, size_t length) -> la_ssize_t {
    auto* state = static_cast<State*>(client);
    try {
      state->file.write(buffer, length);
    } catch (const std::exception& e) {
      state->error = e.what();
      return -1;
    }
    return static_cast<la_ssize_t>(length);
  };
  archive* a = state_->archive.get();
  if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
      archive_write_open(a, state_.get(), nullptr, +write_to_atomic_file, nullptr) != ARCHIVE_OK) {
    throw DataError(path + ": cannot write the shard: " + archive_message(a), path);
  }
}

TarShardWriter::~TarShardWriter() = default;

void TarShardWriter::add(const std::string& name, const std::string& bytes) {
  archive* a = state_->archive.get();
  std::unique_ptr<archive_entry, void (*)(archive_entry*)> entry(archive_entry_new(), archive_entry_free);
  archive_entry_set_pathname(entry.get(), name.c_str());
  archive_entry_set_filetype(entry.get(), AE_IFREG);
  archive_entry_set_perm(entry.get(), 0644);
  archive_entry_set_size(entry.get(), static_cast<la_int64_t>(bytes.size()));
  archive_entry_set_mtime(entry.get(), 0, 0);
  const bool ok = archive_write_header(a, entry.get()) == ARCHIVE_OK &&
                  archive_write_data(a, bytes.data(), bytes.size()) == static_cast<la_ssize_t>(bytes.size());
  if (!ok) {
    const std::string why = state_->error.empty() ? archive_message(a) : state_->error;
    throw DataError(state_->file.path() + ": cannot write member '" + name + "': " + why, state_->file.path());
  }
}

void TarShardWriter::commit() {
  archive* a = state_->archive.get();
  if (archive_write_close(a) != ARCHIVE_OK) {
    const std::string why = state_->error.empty() ? archive_message(a) : state_->error;
    throw DataError(state_->file.path() + ": cannot finish the shard: " + why, state_->file.path());
  }
  state_->file.commit();
}

}  // namespace sdtrain

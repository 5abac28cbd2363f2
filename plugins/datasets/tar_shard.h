#pragma once
/// Tar shards as WebDataset writes and reads them: the listing of a shard's members (libarchive
/// reads the headers and skips the data), reads of one member's bytes by offset, WebDataset's
/// grouping of members into samples, and a writer (`sddata convert`).
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace sdtrain {

/// A regular file in a tar shard: its name and where its bytes lie in the shard file.
struct TarMember {
  std::string name;
  int64_t offset = 0;
  int64_t size = 0;
};

/// A shard's regular files, in order. Directories, links and other entries are left out, as
/// WebDataset leaves them out.
struct TarListing {
  std::vector<TarMember> members;
  int64_t file_size = 0;
  /// Empty when the whole shard was read. Otherwise why reading stopped (libarchive's message, or
  /// a member's data running past the end of the file) and at which byte: the shard is truncated
  /// or corrupt, and only the members before that point are listed.
  std::string error;
  /// The name of the member whose data runs past the end of the file, when that is why reading
  /// stopped ("" otherwise: the break is in a header, whose member is unknown).
  std::string broken_member;
};

/// Lists `path`'s members (ustar, pax and GNU tar). Reads only the headers: a member's data is
/// skipped with a seek. Throws DataError naming `path` when the file cannot be opened, is not a
/// tar file, or is compressed (a compressed shard has no offsets to read a member from; WebDataset
/// shards hold already compressed images and are stored uncompressed).
TarListing list_tar(const std::string& path);

/// The bytes of `members` in `path`, in order, through one open file (pread at each member's
/// offset; nothing else of the file is read). Throws DataError naming `path` when the file cannot
/// be read or holds fewer bytes.
std::vector<std::string> read_members(const std::string& path, const std::vector<const TarMember*>& members);

/// A WebDataset sample: consecutive members sharing the key (the name up to the first '.' of its
/// last path component), each part named by the rest (the suffix, lower-cased).
struct WebDatasetSample {
  std::string key;
  std::vector<std::pair<std::string, TarMember>> parts;  ///< (suffix, member), in shard order
  /// Why the sample cannot be used, or empty: a suffix that appears twice (WebDataset raises),
  /// or a member name that is absolute or climbs out with "..".
  std::string problem;
};

/// Groups a shard's members as WebDataset's tar_file_iterator and group_by_keys do: members whose
/// name has no suffix are skipped, as are metadata members ("__*__"); a new sample starts where
/// the key changes; samples end at the end of the shard. Of a broken shard (listing.error), the
/// sample of the broken member, or without one the last sample (whose later members may be lost),
/// gets the error as its problem.
std::vector<WebDatasetSample> group_webdataset_samples(const TarListing& listing);

/// Writes a tar shard (POSIX pax, readable by every tar and by WebDataset) through an AtomicFile:
/// `path` appears complete at commit() or not at all. Members get mode 0644, owner 0 and mtime 0,
/// so equal inputs give equal shards.
class TarShardWriter {
 public:
  /// Throws DataError naming `path` when it cannot be created (or exists and !overwrite).
  explicit TarShardWriter(const std::string& path, bool overwrite = false);
  ~TarShardWriter();
  TarShardWriter(const TarShardWriter&) = delete;
  TarShardWriter& operator=(const TarShardWriter&) = delete;

  void add(const std::string& name, const std::string& bytes);
  void commit();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace sdtrain

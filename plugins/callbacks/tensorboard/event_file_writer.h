#pragma once
/// Writes TensorBoard event files: TFRecord-framed `Event` protos that TensorBoard (and its
/// `EventAccumulator`) reads as scalars and images.
///
/// File layout: a sequence of records, each
///   uint64 length (little endian) | uint32 masked CRC-32C of those 8 bytes |
///   `length` bytes of a serialised Event | uint32 masked CRC-32C of those bytes,
/// the first Event holding file_version "brain.Event:2". Every record is flushed to the
/// operating system as soon as it is written, so a crash of the process loses nothing written
/// before it and a crash of the machine at most the records since the last sync.
#include <cstdint>
#include <cstdio>
#include <string>

#include "sdtrain/image.h"

namespace sdtrain {

class EventFileWriter {
 public:
  /// Creates `directory` (and parents) and in it a new file
  /// `events.out.tfevents.<unix seconds, 10 digits>.<hostname>`; if that name exists (two runs in
  /// the same second) `.1`, `.2`, ... is appended. An existing file is never appended to:
  /// TensorBoard reads every file of a folder in name order, so a resumed run gets its own file.
  /// Throws std::runtime_error naming the path when the file cannot be created.
  explicit EventFileWriter(const std::string& directory);
  ~EventFileWriter();
  EventFileWriter(const EventFileWriter&) = delete;
  EventFileWriter& operator=(const EventFileWriter&) = delete;

  /// The file being written.
  const std::string& path() const { return path_; }

  /// A scalar (stored as float32, TensorBoard's simple_value) at `step`.
  void add_scalar(const std::string& tag, double value, std::int64_t step);
  /// An image (1-4 channels, 8 bit), stored PNG-encoded, at `step`.
  void add_image(const std::string& tag, const Image& image, std::int64_t step);
  /// A SessionLog START at `step`: TensorBoard then hides the events with step >= `step` that
  /// it read before this one (from an interrupted run that a resumed run replays).
  void add_session_start(std::int64_t step);

  /// Writes buffered data to the file and syncs it to the disk.
  void sync();

 private:
  /// Frames and writes one serialised Event, then flushes. Throws std::runtime_error naming the
  /// file on a write error.
  void write_record(const std::string& data);

  std::string path_;
  std::FILE* file_ = nullptr;
};

/// Seconds since the Unix epoch with sub-second precision (Event.wall_time).
double wall_time_now();

}  // namespace sdtrain

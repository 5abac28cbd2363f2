#pragma once
/// The flight recorder: the last collectives this process entered, and where every rank stands
/// when one of them hangs (PyTorch's Flight Recorder for NCCL is the model).
///
/// Each communicator records a collective when it enters it (sequence number, what it is: kind
/// and size) and when it completes. Once a run has a folder for it (Trainer: run.output_dir/
/// flight_recorder), a watchdog thread publishes the record there, one JSON file per rank
/// (rank-NNNNN.json, rewritten atomically when it changed, at most every 0.5 s). The thread needs
/// no communicator, so a rank whose main thread is stuck — in a kernel, in a stalled fault point,
/// in a collective a dead peer never joins — still shows its last collective. On a collective
/// timeout the communicator asks hang_report(), which reads every rank's file and names the ranks
/// that are behind and the collective each last entered. The folder must be one all ranks see (as
/// run.output_dir must be for checkpoints). A Trainer that ends (finished, or failed with an
/// exception) removes its rank's file, so files left behind belong to a process that was aborted
/// (a collective timeout) or killed.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace sdtrain {

/// One collective as recorded.
struct CollectiveRecord {
  long long sequence = 0;
  std::string what;          ///< e.g. "allreduce of 1024 elements"
  double entered_at = 0;     ///< wall clock, seconds since the Unix epoch
  double completed_at = -1;  ///< idem; < 0 while not completed
};

class FlightRecorder {
 public:
  /// How many of the latest collectives are kept.
  static constexpr std::size_t kCapacity = 64;

  /// The process's recorder (communicators record into it).
  static FlightRecorder& instance();

  FlightRecorder() = default;
  ~FlightRecorder();
  FlightRecorder(const FlightRecorder&) = delete;
  FlightRecorder& operator=(const FlightRecorder&) = delete;

  /// Records that collective `sequence` was entered. Thread-safe, as every member.
  void entered(long long sequence, const std::string& what);
  /// Records that collective `sequence` completed (no-op if it is no longer kept).
  void completed(long long sequence);
  /// The kept records, oldest first.
  std::vector<CollectiveRecord> records() const;

  /// Starts the watchdog thread writing this rank's records to `folder`/rank-NNNNN.json every
  /// `period_s` when they changed (creating the folder). Replaces an earlier publication.
  void publish_to(const std::string& folder, int rank, double period_s = 0.5);
  /// Stops the watchdog; with `remove_file` deletes this rank's file (a normal end).
  void stop_publishing(bool remove_file);
  /// Writes this rank's file now (before reading the others' in hang_report).
  void publish_now();

  /// Where every rank stands, from the published files of ranks 0..world_size-1: the ranks
  /// whose last entered collective is behind the furthest one, with that collective and whether
  /// it completed; the ranks waiting in the furthest one; ranks without a readable file. Waits
  /// two publication periods first so that the other ranks' files are current. "" when nothing is
  /// published (no folder set).
  std::string hang_report(int world_size);

  /// The JSON a rank's file holds: {"rank", "written_at", "collectives": [{"sequence", "what",
  /// "entered_at", "completed_at"}, ...]}.
  std::string to_json() const;

 private:
  void watchdog_loop();
  void write_file();

  mutable std::mutex mutex_;
  std::deque<CollectiveRecord> records_;
  uint64_t version_ = 0;            ///< changes with every record
  uint64_t written_version_ = ~0ull;
  std::string folder_;
  int rank_ = 0;
  double period_s_ = 0.5;
  bool stopping_ = false;
  std::condition_variable wake_;
  std::thread watchdog_;
};

/// Describes the hang from each rank's published JSON (`files[r]` the text of rank r's file, ""
/// when missing or unreadable) as of wall-clock time `now` (seconds since the Unix epoch): what
/// FlightRecorder::hang_report() prints.
std::string describe_hang(const std::vector<std::string>& files, double now);

}  // namespace sdtrain

#include "framework/dist/flight_recorder.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include <nlohmann/json.hpp>


namespace sdtrain {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

double wall_clock_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string rank_file(const std::string& folder, int rank) {
  char name[32];
  std::snprintf(name, sizeof name, "rank-%05d.json", rank);
  return (fs::path(folder) / name).string();
}

std::string seconds_ago(double then, double now) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f s ago", std::max(0.0, now - then));
  return text;
}

}  // namespace

FlightRecorder& FlightRecorder::instance() {
  static FlightRecorder recorder;
  return recorder;
}

FlightRecorder::~FlightRecorder() { stop_publishing(false); }

void FlightRecorder::entered(long long sequence, const std::string& what) {
  std::lock_guard<std::mutex> lock(mutex_);
  records_.push_back({sequence, what, wall_clock_now(), -1});
  if (records_.size() > kCapacity) records_.pop_front();
  ++version_;
}

void FlightRecorder::completed(long long sequence) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it = records_.rbegin(); it != records_.rend(); ++it) {
    if (it->sequence == sequence) {
      if (it->completed_at < 0) {
        it->completed_at = wall_clock_now();
        ++version_;
      }
      return;
    }
  }
}

std::vector<CollectiveRecord> FlightRecorder::records() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return {records_.begin(), records_.end()};
}

std::string FlightRecorder::to_json() const {
  json collectives = json::array();
  int rank = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    rank = rank_;
    for (const CollectiveRecord& record : records_) {
      collectives.push_back({{"sequence", record.sequence},
                             {"what", record.what},
                             {"entered_at", record.entered_at},
                             {"completed_at", record.completed_at}});
    }
  }
  return json{{"rank", rank}, {"written_at", wall_clock_now()}, {"collectives", collectives}}.dump(1);
}

void FlightRecorder::publish_to(const std::string& folder, int rank, double period_s) {
  stop_publishing(false);
  fs::create_directories(folder);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    folder_ = folder;
    rank_ = rank;
    period_s_ = period_s;
    stopping_ = false;
    written_version_ = ~0ull;
  }
  watchdog_ = std::thread([this] { watchdog_loop(); });
}

void FlightRecorder::stop_publishing(bool remove_file) {
  std::string file;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!watchdog_.joinable()) return;
    stopping_ = true;
    file = rank_file(folder_, rank_);
  }
  wake_.notify_all();
  watchdog_.join();
  std::lock_guard<std::mutex> lock(mutex_);
  if (remove_file) {
    std::error_code ignored;
    fs::remove(file, ignored);
  }
  folder_.clear();
}

void FlightRecorder::watchdog_loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    if (version_ != written_version_) {
      lock.unlock();
      write_file();
      lock.lock();
    }
    wake_.wait_for(lock, std::chrono::duration<double>(period_s_), [this] { return stopping_; });
  }
}

void FlightRecorder::write_file() {
  std::string folder;
  int rank = 0;
  uint64_t version = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (folder_.empty()) return;
    folder = folder_;
    rank = rank_;
    version = version_;
  }
  // A temporary file renamed over the old one: a reader never sees half a record. No fsync: the
  // record is a diagnostic, and a full or vanished disk must not end the run.
  const std::string path = rank_file(folder, rank);
  const std::string temporary = path + ".tmp" + std::to_string(::getpid());
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out << to_json();
    if (!out) return;
  }
  std::error_code error;
  fs::rename(temporary, path, error);
  if (error) return;
  std::lock_guard<std::mutex> lock(mutex_);
  written_version_ = version;
}

void FlightRecorder::publish_now() { write_file(); }

std::string FlightRecorder::hang_report(int world_size) {
  std::string folder;
  double period_s = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    folder = folder_;
    period_s = period_s_;
  }
  if (folder.empty()) return "";
  publish_now();
  std::this_thread::sleep_for(std::chrono::duration<double>(2 * period_s + 0.2));
  std::vector<std::string> files;
  for (int rank = 0; rank < world_size; ++rank) {
    std::ifstream in(rank_file(folder, rank), std::ios::binary);
    files.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return describe_hang(files, wall_clock_now()) + " (records in " + folder + ")";
}

std::string describe_hang(const std::vector<std::string>& files, double now) {
  struct Last {
    bool known = false;
    long long sequence = 0;
    std::string what;
    double entered_at = 0;
    double completed_at = -1;
  };
  std::vector<Last> last(files.size());
  long long furthest = 0;
  for (std::size_t rank = 0; rank < files.size(); ++rank) {
    try {
      const json record = json::parse(files[rank]);
      const json& collectives = record.at("collectives");
      last[rank].known = true;
      if (!collectives.empty()) {
        const json& newest = collectives.back();
        last[rank].sequence = newest.at("sequence").get<long long>();
        last[rank].what = newest.at("what").get<std::string>();
        last[rank].entered_at = newest.at("entered_at").get<double>();
        last[rank].completed_at = newest.at("completed_at").get<double>();
      }
      furthest = std::max(furthest, last[rank].sequence);
    } catch (const json::exception&) {
      // Missing or half-written: reported as unknown.
    }
  }
  std::ostringstream behind;
  std::string waiting;
  std::string unknown;
  for (std::size_t rank = 0; rank < files.size(); ++rank) {
    const Last& l = last[rank];
    if (!l.known) {
      unknown += (unknown.empty() ? "" : ", ") + std::to_string(rank);
    } else if (l.sequence < furthest) {
      behind << (behind.tellp() > 0 ? "; " : "") << "rank " << rank << " is behind at collective #" << l.sequence;
      if (l.sequence > 0) {
        behind << " (" << l.what << ", entered " << seconds_ago(l.entered_at, now) << ", "
               << (l.completed_at >= 0 ? "completed " + seconds_ago(l.completed_at, now) + ", nothing entered since"
                                       : "not completed")
               << ")";
      } else {
        behind << " (none entered yet)";
      }
    } else {
      waiting += (waiting.empty() ? "" : ", ") + std::to_string(rank);
    }
  }
  std::string report = "flight recorder: ";
  if (behind.tellp() > 0) {
    report += behind.str() + "; rank(s) " + waiting + " entered collective #" + std::to_string(furthest);
  } else {
    report += "every rank with a record entered collective #" + std::to_string(furthest) +
              " (so the backend itself, not a rank, is stuck)";
  }
  if (!unknown.empty()) report += "; no record from rank(s) " + unknown;
  return report;
}

}  // namespace sdtrain

// The flight recorder: the last collectives kept, published to a file per rank by its own
// thread, and the hang described from every rank's file.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include <nlohmann/json.hpp>

#include "framework/dist/flight_recorder.h"
#include "tests/common/test_env.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

TEST(FlightRecorder, KeepsTheLatestCollectivesWithTheirCompletion) {
  FlightRecorder recorder;
  for (long long sequence = 1; sequence <= 70; ++sequence) {
    recorder.entered(sequence, "allreduce of " + std::to_string(sequence) + " elements");
    if (sequence < 70) recorder.completed(sequence);
  }
  recorder.completed(3);  // no longer kept: ignored
  const std::vector<CollectiveRecord> records = recorder.records();
  ASSERT_EQ(records.size(), FlightRecorder::kCapacity);
  EXPECT_EQ(records.front().sequence, 70 - static_cast<long long>(FlightRecorder::kCapacity) + 1);
  EXPECT_EQ(records.back().sequence, 70);
  EXPECT_EQ(records.back().what, "allreduce of 70 elements");
  EXPECT_LT(records.back().completed_at, 0) << "entered, not completed";
  EXPECT_GE(records[records.size() - 2].completed_at, records[records.size() - 2].entered_at);
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Its own thread writes the file, so a caller that never returns (a hung rank) is still seen;
// a normal stop removes it.
TEST(FlightRecorder, PublishesFromItsOwnThreadAndRemovesTheFileAtAnEnd) {
  const fs::path dir = test::scratch_dir() / "recorder";
  FlightRecorder recorder;
  recorder.publish_to(dir.string(), 3, 0.05);
  recorder.entered(1, "barrier");
  recorder.completed(1);
  recorder.entered(2, "allreduce of 8 elements");
  const fs::path file = dir / "rank-00003.json";
  nlohmann::json record;
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    record = nlohmann::json::parse(read_text(file), nullptr, /*allow_exceptions=*/false);
    if (!record.is_discarded() && record.at("collectives").size() == 2) break;
  }
  ASSERT_FALSE(record.is_discarded()) << read_text(file);
  EXPECT_EQ(record.at("rank"), 3);
  ASSERT_EQ(record.at("collectives").size(), 2u);
  EXPECT_EQ(record.at("collectives")[1].at("what"), "allreduce of 8 elements");
  EXPECT_LT(record.at("collectives")[1].at("completed_at").get<double>(), 0);
  recorder.stop_publishing(/*remove_file=*/true);
  EXPECT_FALSE(fs::exists(file));
}

std::string rank_json(const std::vector<std::tuple<long long, std::string, double, double>>& collectives) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& [sequence, what, entered, completed] : collectives) {
    list.push_back({{"sequence", sequence}, {"what", what}, {"entered_at", entered}, {"completed_at", completed}});
  }
  return nlohmann::json{{"rank", 0}, {"written_at", 0.0}, {"collectives", list}}.dump();
}

TEST(FlightRecorder, TheHangReportNamesTheRankBehindAndItsCollective) {
  const double now = 1000.0;
  const std::string waiting = rank_json({{7, "allreduce of 3 elements", 990, 990.5}, {8, "allreduce of 5 elements", 995, -1}});
  const std::string stalled = rank_json({{7, "allreduce of 3 elements", 990, 990.5}});
  EXPECT_EQ(describe_hang({waiting, stalled, waiting}, now),
            "flight recorder: rank 1 is behind at collective #7 (allreduce of 3 elements, entered 10.0 s ago, "
            "completed 9.5 s ago, nothing entered since); rank(s) 0, 2 entered collective #8");
  EXPECT_EQ(describe_hang({waiting, rank_json({}), ""}, now),
            "flight recorder: rank 1 is behind at collective #0 (none entered yet); rank(s) 0 entered collective #8; "
            "no record from rank(s) 2");
  EXPECT_EQ(describe_hang({waiting, waiting}, now),
            "flight recorder: every rank with a record entered collective #8 (so the backend itself, not a rank, "
            "is stuck)");
}

}  // namespace
}  // namespace sdtrain

// A mapped weights file gives back the pages of each view when the view's last hold goes: the
// process's resident memory, read from /proc/self/smaps for the mapping itself, falls tensor by
// tensor, and bytes still viewed (a neighbour on a shared page, a second view of the same bytes)
// keep what was written into them.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "framework/io/ckpt.h"
#include "framework/io/mapped_file.h"
#include "framework/io/safetensors.h"
#include "tests/io/io_test_util.h"

namespace sdtrain {
namespace {

using testing::ScratchDir;

const std::size_t kPage = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));

/// Resident bytes of the mapping that contains `address` ("Rss:" of its /proc/self/smaps entry).
std::size_t resident_bytes_of_mapping_at(const void* address) {
  const auto at = reinterpret_cast<std::uintptr_t>(address);
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    std::uintptr_t begin = 0, end = 0;
    char dash = 0;
    std::istringstream header(line);
    if (header >> std::hex >> begin >> dash >> end && dash == '-') {
      inside = begin <= at && at < end;
    } else if (inside && line.rfind("Rss:", 0) == 0) {
      return std::stoull(line.substr(4)) * 1024;
    }
  }
  throw std::runtime_error("no mapping holds the address");
}

/// A file of `pages` pages whose byte i is i % 251.
std::string write_pattern_file(const ScratchDir& dir, std::size_t pages) {
  std::string bytes(pages * kPage, '\0');
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i % 251);
  const std::string path = dir.file("pattern.bin");
  testing::write_bytes(path, bytes);
  return path;
}

std::uint8_t pattern(std::size_t offset) { return static_cast<std::uint8_t>(offset % 251); }

/// Reads every page of [begin, begin + size) so that it is resident.
void touch(const std::uint8_t* begin, std::size_t size) {
  volatile std::uint8_t sink = 0;
  for (std::size_t i = 0; i < size; i += kPage) sink = sink + begin[i];
}

TEST(MappedFile, APageLeavesResidentMemoryWithItsLastHold) {
  ScratchDir dir;
  const auto file = MappedFile::open(write_pattern_file(dir, 64));
  std::uint8_t* data = file->mutable_data();
  auto first = file->hold(data, 32 * kPage);
  auto second = file->hold(data + 32 * kPage, 32 * kPage);
  touch(data, 64 * kPage);
  data[10] = 7;             // a private copy of page 0
  data[40 * kPage + 3] = 9;  // and of page 40
  EXPECT_EQ(resident_bytes_of_mapping_at(data), 64 * kPage);

  first.reset();
  EXPECT_EQ(resident_bytes_of_mapping_at(data), 32 * kPage);
  EXPECT_EQ(data[10], pattern(10)) << "read again from the file: the write went with the hold";
  EXPECT_EQ(data[40 * kPage + 3], 9) << "the other hold's page keeps its write";

  // Reading page 0 again mapped it and, the kernel's fault-around, up to 15 of its neighbours.
  const std::size_t resident = resident_bytes_of_mapping_at(data);
  second.reset();
  EXPECT_EQ(resident_bytes_of_mapping_at(data), resident - 32 * kPage);
  EXPECT_EQ(data[40 * kPage + 3], pattern(40 * kPage + 3));
}

TEST(MappedFile, PagesAnotherHoldTouchesStay) {
  ScratchDir dir;
  const auto file = MappedFile::open(write_pattern_file(dir, 8));
  std::uint8_t* data = file->mutable_data();
  // Neighbours sharing page 0, as small tensors of one file do.
  auto small = file->hold(data + 100, 200);
  auto large = file->hold(data + 300, 2 * kPage);  // pages 0-2
  // Two views of the same bytes, as reading one tensor twice gives.
  auto view = file->hold(data + 4 * kPage, kPage);
  auto same_view = file->hold(data + 4 * kPage, kPage);
  data[150] = 1;
  data[2 * kPage + 5] = 2;
  data[4 * kPage + 5] = 3;

  small.reset();
  EXPECT_EQ(data[150], 1) << "page 0 is still held by its neighbour";
  same_view.reset();
  EXPECT_EQ(data[4 * kPage + 5], 3) << "the bytes are still viewed";

  large.reset();
  EXPECT_EQ(data[150], pattern(150));
  EXPECT_EQ(data[2 * kPage + 5], pattern(2 * kPage + 5));
  view.reset();
  EXPECT_EQ(data[4 * kPage + 5], pattern(4 * kPage + 5));
}

TEST(MappedFile, AHoldOutsideTheMappingIsRefusedAndTheMappingOutlivesItsHolds) {
  ScratchDir dir;
  auto file = MappedFile::open(write_pattern_file(dir, 2));
  const std::uint8_t* data = file->data();
  EXPECT_THROW(file->hold(data + 2 * kPage - 1, 2), std::out_of_range);
  EXPECT_THROW(file->hold(data - 1, 1), std::out_of_range);
  EXPECT_NO_THROW(file->hold(data + 2 * kPage, 0));
  auto hold = file->hold(data + kPage, kPage);
  file.reset();  // the hold keeps the file mapped
  EXPECT_EQ(static_cast<const std::uint8_t*>(hold.get())[1], pattern(kPage + 1));
}

// Holds taken and dropped from several threads at once, as loader threads drop tensors: no page
// is given back while a live hold (its own thread's, or one on a page shared with a neighbour)
// covers it, so every byte written under a hold is still there while the hold lives. Also run
// under ThreadSanitizer (launch/sanitize/run_sanitizers.sh tsan).
TEST(MappedFile, HoldsFromSeveralThreadsNeverGiveBackAPageStillHeld) {
  constexpr std::size_t kThreads = 4, kPagesEach = 16, kRounds = 200;
  ScratchDir dir;
  const auto file = MappedFile::open(write_pattern_file(dir, kThreads * kPagesEach));
  std::uint8_t* data = file->mutable_data();
  // Long-lived holds across each boundary between two threads' pages, written before they start.
  std::vector<std::shared_ptr<void>> boundaries;
  for (std::size_t t = 1; t < kThreads; ++t) {
    std::uint8_t* boundary = data + t * kPagesEach * kPage;
    boundaries.push_back(file->hold(boundary - kPage, 2 * kPage));
    boundary[-1] = 200;
    boundary[0] = 201;
  }
  std::vector<std::size_t> lost(kThreads, 0);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::uint8_t* own = data + t * kPagesEach * kPage;
      for (std::size_t round = 0; round < kRounds; ++round) {
        // Two overlapping holds; the byte on page 6 is covered by both, then by the second alone.
        auto first = file->hold(own, 8 * kPage);
        auto second = file->hold(own + 4 * kPage, 12 * kPage);  // up to the boundary hold's page
        const auto marker = static_cast<std::uint8_t>(round % 199);
        own[6 * kPage + 1] = marker;
        first.reset();
        if (own[6 * kPage + 1] != marker) ++lost[t];
        second.reset();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (std::size_t t = 0; t < kThreads; ++t) EXPECT_EQ(lost[t], 0u) << "thread " << t;
  for (std::size_t t = 1; t < kThreads; ++t) {
    const std::uint8_t* boundary = data + t * kPagesEach * kPage;
    EXPECT_EQ(boundary[-1], 200) << "boundary " << t << ": a neighbour's release gave back a held page";
    EXPECT_EQ(boundary[0], 201) << "boundary " << t;
  }
}

// The readers take their holds: dropping one tensor of a file that stays open gives its pages back.
void expect_dropping_a_tensor_gives_back_its_pages(torch::Tensor dropped, const torch::Tensor& kept) {
  const std::size_t bytes = static_cast<std::size_t>(dropped.nbytes());
  const void* address = dropped.data_ptr();
  ASSERT_EQ(resident_bytes_of_mapping_at(address), resident_bytes_of_mapping_at(kept.data_ptr()))
      << "both tensors view one mapping";
  EXPECT_EQ(dropped.sum().item<double>(), 0.0);
  const torch::Tensor expected = kept.clone();
  kept.add_(1.0);
  const std::size_t before = resident_bytes_of_mapping_at(address);
  EXPECT_GE(before, 2 * bytes);
  dropped = torch::Tensor();
  EXPECT_LE(resident_bytes_of_mapping_at(address), before - bytes + 2 * kPage);
  EXPECT_TRUE(torch::equal(kept, expected + 1.0)) << "the kept tensor keeps its in-place change";
}

TEST(MappedFile, SafetensorsTensorsGiveBackTheirPages) {
  ScratchDir dir;
  const std::string path = dir.file("two.safetensors");
  save_safetensors(path, {{"a", torch::zeros({256, 1024})}, {"b", torch::ones({256, 1024})}});
  torch::Tensor a, b;
  {
    SafetensorsReader reader(path);
    a = reader.tensor("a");
    b = reader.tensor("b");
  }
  expect_dropping_a_tensor_gives_back_its_pages(std::move(a), b);
}

TEST(MappedFile, CkptTensorsGiveBackTheirPages) {
  ScratchDir dir;
  const std::string path = dir.file("two.ckpt");
  save_ckpt_state_dict(path, {{"a", torch::zeros({256, 1024})}, {"b", torch::ones({256, 1024})}});
  auto tensors = load_ckpt_state_dict(path);
  ASSERT_EQ(tensors.size(), 2u);
  torch::Tensor b = tensors[1].second;
  torch::Tensor a = std::move(tensors[0].second);
  tensors.clear();
  expect_dropping_a_tensor_gives_back_its_pages(std::move(a), b);
}

}  // namespace
}  // namespace sdtrain

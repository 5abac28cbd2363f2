#include "plugins/callbacks/tensorboard/event_file_writer.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "framework/data/image_codec.h"
#include "plugins/callbacks/tensorboard/crc32c.h"
#include "plugins/callbacks/tensorboard/tensorboard_event.pb.h"

namespace sdtrain {
namespace fs = std::filesystem;

namespace {

std::string hostname() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

void put_le(std::string& out, std::uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
}

tb::Event event_at(std::int64_t step) {
  tb::Event event;
  event.set_wall_time(wall_time_now());
  event.set_step(step);
  return event;
}

}  // namespace

double wall_time_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

EventFileWriter::EventFileWriter(const std::string& directory) {
  std::error_code error;
  fs::create_directories(directory, error);
  if (error) throw std::runtime_error("tensorboard: cannot create " + directory + ": " + error.message());
  char stamp[32];
  std::snprintf(stamp, sizeof(stamp), "%010lld", static_cast<long long>(wall_time_now()));
  const std::string base = (fs::path(directory) / ("events.out.tfevents." + std::string(stamp) + "." + hostname())).string();
  for (int attempt = 0; attempt < 1000 && !file_; ++attempt) {
    path_ = attempt == 0 ? base : base + "." + std::to_string(attempt);
    file_ = std::fopen(path_.c_str(), "wbx");  // exclusive: never append to another run's file
    if (!file_ && errno != EEXIST) break;
  }
  if (!file_) throw std::runtime_error("tensorboard: cannot create " + path_ + ": " + std::strerror(errno));
  tb::Event event = event_at(0);
  event.set_file_version("brain.Event:2");
  write_record(event.SerializeAsString());
}

EventFileWriter::~EventFileWriter() {
  if (!file_) return;
  ::fsync(fileno(file_));
  std::fclose(file_);
}

void EventFileWriter::add_scalar(const std::string& tag, double value, std::int64_t step) {
  tb::Event event = event_at(step);
  tb::Summary::Value* entry = event.mutable_summary()->add_value();
  entry->set_tag(tag);
  entry->set_simple_value(static_cast<float>(value));
  write_record(event.SerializeAsString());
}

void EventFileWriter::add_image(const std::string& tag, const Image& image, std::int64_t step) {
  tb::Event event = event_at(step);
  tb::Summary::Value* entry = event.mutable_summary()->add_value();
  entry->set_tag(tag);
  tb::Summary::Image* encoded = entry->mutable_image();
  encoded->set_height(image.height);
  encoded->set_width(image.width);
  encoded->set_colorspace(image.channels);
  encoded->set_encoded_image_string(encode_png(image));
  write_record(event.SerializeAsString());
}

void EventFileWriter::add_session_start(std::int64_t step) {
  tb::Event event = event_at(step);
  event.mutable_session_log()->set_status(tb::SessionLog::START);
  write_record(event.SerializeAsString());
}

void EventFileWriter::sync() {
  if (std::fflush(file_) != 0 || ::fsync(fileno(file_)) != 0) {
    throw std::runtime_error("tensorboard: cannot sync " + path_ + ": " + std::strerror(errno));
  }
}

void EventFileWriter::write_record(const std::string& data) {
  std::string header;
  put_le(header, data.size(), 8);
  std::string record = header;
  put_le(record, masked_crc32c(header.data(), header.size()), 4);
  record += data;
  put_le(record, masked_crc32c(data.data(), data.size()), 4);
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size() || std::fflush(file_) != 0) {
    throw std::runtime_error("tensorboard: cannot write " + path_ + ": " + std::strerror(errno));
  }
}

}  // namespace sdtrain

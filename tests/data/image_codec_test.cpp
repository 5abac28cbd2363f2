// Decoding parity with PIL's Image.open(...).convert("RGB"), hostile inputs, PNG encoding.
#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "framework/data/image_codec.h"
#include "framework/util/file_util.h"
#include "sdtrain/errors.h"
#include "tests/data/test_support.h"

namespace sdtrain {
namespace {

using testing::fixture_dir;
using testing::fixture_manifest;

constexpr std::int64_t kPilMaxPixels = 89478485;

TEST(ImageCodec, DecodesLikePil) {
  const auto manifest = fixture_manifest();
  ASSERT_GE(manifest["decode"].size(), 15u);
  for (const auto& entry : manifest["decode"]) {
    const std::string file = entry["file"];
    SCOPED_TRACE(file + " (" + std::string(entry["note"]) + ")");
    const Image image = read_image_file((fixture_dir() / file).string(), kPilMaxPixels);
    const Image expected = testing::read_raw_rgb((fixture_dir() / std::string(entry["expected"])).string(),
                                                 entry["width"], entry["height"]);
    ASSERT_EQ(image.channels, 3);
    ASSERT_EQ(image.width, expected.width);
    ASSERT_EQ(image.height, expected.height);
    int max_error = 0;
    long long total = 0;
    for (std::size_t i = 0; i < image.pixels.size(); ++i) {
      const int d = std::abs(int(image.pixels[i]) - int(expected.pixels[i]));
      max_error = std::max(max_error, d);
      total += d;
    }
    const int tolerance = entry["max_abs_tolerance"];
    EXPECT_LE(max_error, tolerance) << "mean abs error " << double(total) / image.pixels.size();
    if (max_error > 0) {
      std::cout << file << ": max abs error " << max_error << ", mean "
                << double(total) / image.pixels.size() << "\n";
    }
  }
}

TEST(ImageCodec, RejectsCorruptAndHostileFilesNamingThePath) {
  const auto manifest = fixture_manifest();
  for (const auto& entry : manifest["corrupt"]) {
    const std::string path = (fixture_dir() / std::string(entry["file"])).string();
    const std::string expected = entry["message"];
    SCOPED_TRACE(path);
    try {
      read_image_file(path, kPilMaxPixels);
      ADD_FAILURE() << "decoded without error";
    } catch (const DataError& error) {
      const std::string message = error.what();
      EXPECT_EQ(message.rfind(path + ": ", 0), 0u) << message;
      EXPECT_NE(message.find(expected), std::string::npos) << message;
    }
  }
}

TEST(ImageCodec, BombIsRefusedFromTheHeaderWithItsSize) {
  const std::string path = (fixture_dir() / "bomb.png").string();
  try {
    read_image_file(path, kPilMaxPixels);
    FAIL();
  } catch (const DataError& error) {
    EXPECT_NE(std::string(error.what()).find("100000x100000 = 10000000000 pixels exceeds the limit of 89478485"),
              std::string::npos)
        << error.what();
  }
  // The size comes from the header alone.
  EXPECT_EQ(read_image_size(read_file(path), path), std::make_pair(100000, 100000));
  EXPECT_EQ(read_image_size(read_file((fixture_dir() / "bomb.jpg").string()), "x"),
            std::make_pair(60000, 60000));
}

TEST(ImageCodec, MaxPixelsIsInclusiveAndZeroMeansNoLimit) {
  const std::string path = (fixture_dir() / "rgb.png").string();  // 131 x 77
  EXPECT_EQ(read_image_file(path, 131 * 77).width, 131);
  EXPECT_THROW(read_image_file(path, 131 * 77 - 1), DataError);
  EXPECT_EQ(read_image_file(path, 0).height, 77);
}

TEST(ImageCodec, MissingFileNamesThePath) {
  try {
    read_image_file("/nonexistent/dir/x.jpg", 100);
    FAIL();
  } catch (const DataError& error) {
    EXPECT_EQ(std::string(error.what()), "/nonexistent/dir/x.jpg: cannot read: No such file or directory");
  }
}

TEST(ImageCodec, SniffsTheFormatFromTheBytesNotTheName) {
  const std::string png = read_file((fixture_dir() / "rgb.png").string());
  EXPECT_EQ(sniff_image_format(png), ImageFormat::PNG);
  EXPECT_EQ(decode_image(png, "named_like_a.jpg", 0).width, 131);
  EXPECT_EQ(sniff_image_format(read_file((fixture_dir() / "lossy.webp").string())), ImageFormat::WEBP);
  EXPECT_EQ(sniff_image_format(read_file((fixture_dir() / "baseline.jpg").string())), ImageFormat::JPEG);
  EXPECT_EQ(sniff_image_format("hello"), ImageFormat::UNKNOWN);
}

TEST(ImageCodec, RandomGarbageAfterValidSignaturesNeverCrashes) {
  // Every prefix length and a few byte flips of a real JPEG/PNG/WebP: either decodes or throws
  // DataError, never crashes.
  for (const char* name : {"baseline.jpg", "rgb.png", "lossy.webp", "progressive.jpg"}) {
    const std::string bytes = read_file((fixture_dir() / name).string());
    for (std::size_t cut = 0; cut < bytes.size(); cut += 1 + bytes.size() / 97) {
      try {
        decode_image(bytes.substr(0, cut), name, kPilMaxPixels);
      } catch (const DataError&) {
      }
    }
    std::string flipped = bytes;
    for (std::size_t i = 20; i < flipped.size(); i += 37) {
      flipped[i] = static_cast<char>(flipped[i] ^ 0x5A);
      try {
        decode_image(flipped, name, kPilMaxPixels);
      } catch (const DataError&) {
      }
    }
  }
}

TEST(ImageCodec, PngRoundTripWithTextChunks) {
  for (int channels = 1; channels <= 4; ++channels) {
    Image image;
    image.width = 7;
    image.height = 5;
    image.channels = channels;
    for (int i = 0; i < 7 * 5 * channels; ++i) image.pixels.push_back(static_cast<std::uint8_t>(i * 37 + 11));
    const std::string png = encode_png(image, {{"Description", "a red circle, on white"}, {"Software", "sdtrain"}});
    EXPECT_NE(png.find("tEXtDescription"), std::string::npos);
    EXPECT_NE(png.find("a red circle, on white"), std::string::npos);
    const Image back = decode_image(png, "roundtrip", 0);
    ASSERT_EQ(back.width, 7);
    ASSERT_EQ(back.height, 5);
    for (int p = 0; p < 35; ++p) {
      for (int c = 0; c < 3; ++c) {
        // Gray replicates; alpha is dropped.
        const int source_channel = channels <= 2 ? 0 : c;
        EXPECT_EQ(back.pixels[p * 3 + c], image.pixels[p * channels + source_channel]);
      }
    }
  }
}

TEST(ImageCodec, NonAsciiTextGoesToAnInternationalTextChunk) {
  Image image;
  image.width = image.height = 2;
  image.channels = 3;
  image.pixels.assign(12, 9);
  const std::string prompt = "\xE8\xB5\xA4\xE3\x81\x84\xE5\x86\x86, caf\xC3\xA9";  // UTF-8
  const std::string png = encode_png(image, {{"prompt", prompt}, {"seed", "42"}});
  // iTXt: keyword NUL, compression flag 0, method 0, empty language NUL, empty translation NUL.
  EXPECT_NE(png.find(std::string("iTXtprompt") + std::string(5, '\0') + prompt), std::string::npos);
  EXPECT_NE(png.find(std::string("tEXtseed") + '\0' + "42"), std::string::npos);
  EXPECT_EQ(decode_image(png, "itxt", 0).pixels, image.pixels);
}

TEST(ImageCodec, WritePngFileIsAtomicAndReadable) {
  testing::TempDir dir;
  Image image;
  image.width = image.height = 3;
  image.channels = 3;
  image.pixels.assign(27, 200);
  const std::string path = (dir.path() / "out.png").string();
  write_png_file(path, image);
  EXPECT_EQ(read_image_file(path, 0).pixels, image.pixels);
  std::size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) files += entry.is_regular_file();
  EXPECT_EQ(files, 1u);  // no temporary left behind
  EXPECT_THROW(write_png_file((dir.path() / "missing" / "x.png").string(), image), DataError);
  image.pixels.pop_back();
  EXPECT_THROW(encode_png(image), std::invalid_argument);
}

}  // namespace
}  // namespace sdtrain

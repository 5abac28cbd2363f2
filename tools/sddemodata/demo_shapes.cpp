#include "tools/sddemodata/demo_shapes.h"

#include <cmath>

namespace sdtrain {
namespace {

struct Rgb {
  const char* name;
  std::uint8_t r, g, b;
};

constexpr Rgb kColours[] = {{"red", 220, 30, 30},      {"green", 40, 170, 60},  {"blue", 40, 70, 220},
                            {"yellow", 240, 210, 30},  {"orange", 245, 140, 20}, {"purple", 130, 50, 180},
                            {"pink", 245, 130, 185},   {"brown", 130, 80, 35}};
constexpr Rgb kBackgrounds[] = {{"white", 255, 255, 255}, {"black", 0, 0, 0}, {"gray", 128, 128, 128}};
constexpr const char* kShapes[] = {"circle", "square", "triangle"};

std::uint64_t splitmix(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

double uniform(std::uint64_t& state) { return static_cast<double>(splitmix(state) >> 11) * 0x1.0p-53; }

bool inside(int shape, double x, double y, double cx, double cy, double r) {
  const double dx = x - cx, dy = y - cy;
  switch (shape) {
    case 0: return dx * dx + dy * dy <= r * r;
    case 1: return std::fabs(dx) <= r * 0.8 && std::fabs(dy) <= r * 0.8;
    default: {
      // Upward equilateral triangle with circumradius r: apex (0, -r), base at y = r / 2.
      if (dy > r * 0.5 || dy < -r) return false;
      const double half_width = (dy + r) / std::sqrt(3.0);  // width grows linearly from the apex
      return std::fabs(dx) <= half_width;
    }
  }
}

}  // namespace

DemoShape make_demo_shape(std::uint64_t seed, std::uint64_t index, int size) {
  std::uint64_t state = seed * 0xD1B54A32D192ED03ULL + index * 0x9E3779B97F4A7C15ULL + 1;
  splitmix(state);
  const int shape = static_cast<int>(splitmix(state) % 3);
  const Rgb& colour = kColours[splitmix(state) % (sizeof(kColours) / sizeof(kColours[0]))];
  const Rgb& background = kBackgrounds[splitmix(state) % 3];
  const double r = size * (0.2 + 0.15 * uniform(state));
  const double cx = r + (size - 2 * r) * uniform(state);
  const double cy = r + (size - 2 * r) * uniform(state);

  DemoShape demo;
  demo.caption = std::string("a ") + colour.name + " " + kShapes[shape] + " on a " + background.name + " background";
  Image& image = demo.image;
  image.width = image.height = size;
  image.channels = 3;
  image.pixels.resize(static_cast<std::size_t>(size) * size * 3);
  constexpr int kSub = 4;
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) {
      int hits = 0;
      for (int sy = 0; sy < kSub; ++sy) {
        for (int sx = 0; sx < kSub; ++sx) {
          hits += inside(shape, x + (sx + 0.5) / kSub, y + (sy + 0.5) / kSub, cx, cy, r);
        }
      }
      const double a = static_cast<double>(hits) / (kSub * kSub);
      std::uint8_t* p = &image.pixels[(static_cast<std::size_t>(y) * size + x) * 3];
      p[0] = static_cast<std::uint8_t>(std::lround(colour.r * a + background.r * (1 - a)));
      p[1] = static_cast<std::uint8_t>(std::lround(colour.g * a + background.g * (1 - a)));
      p[2] = static_cast<std::uint8_t>(std::lround(colour.b * a + background.b * (1 - a)));
    }
  }
  return demo;
}

}  // namespace sdtrain

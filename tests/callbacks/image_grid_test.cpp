// The grid layout of torchvision.utils.make_grid(nrow=columns, padding=2, pad_value=0).
#include <gtest/gtest.h>

#include <stdexcept>

#include "framework/data/image_grid.h"

namespace sdtrain {
namespace {

Image solid(int width, int height, std::uint8_t value) {
  Image image;
  image.width = width;
  image.height = height;
  image.channels = 3;
  image.pixels.assign(static_cast<std::size_t>(width) * height * 3, value);
  return image;
}

std::uint8_t at(const Image& image, int x, int y) { return image.pixels[(static_cast<std::size_t>(y) * image.width + x) * 3]; }

TEST(ImageGrid, FiveImagesInRowsOfFourAsMakeGrid) {
  std::vector<Image> images;
  for (int i = 0; i < 5; ++i) images.push_back(solid(6, 4, static_cast<std::uint8_t>(10 * (i + 1))));
  const Image grid = make_image_grid(images, 4);
  // make_grid: width = 4 * (6 + 2) + 2, height = 2 * (4 + 2) + 2.
  EXPECT_EQ(grid.width, 34);
  EXPECT_EQ(grid.height, 14);
  EXPECT_EQ(grid.channels, 3);
  EXPECT_EQ(at(grid, 0, 0), 0);             // border
  EXPECT_EQ(at(grid, 2, 2), 10);            // image 0 starts at (padding, padding)
  EXPECT_EQ(at(grid, 7, 5), 10);            // its last pixel
  EXPECT_EQ(at(grid, 8, 2), 0);             // the gap between images 0 and 1
  EXPECT_EQ(at(grid, 10, 2), 20);           // image 1 at x = 8 + 2
  EXPECT_EQ(at(grid, 26, 2), 40);           // image 3, last of the first row
  EXPECT_EQ(at(grid, 2, 8), 50);            // image 4 starts the second row at y = 6 + 2
  EXPECT_EQ(at(grid, 10, 8), 0);            // empty cells stay the pad value
}

TEST(ImageGrid, FewerImagesThanColumnsMakeOneRowOfThatWidth) {
  const Image grid = make_image_grid({solid(3, 3, 1), solid(3, 3, 2)}, 4, 0);
  EXPECT_EQ(grid.width, 6);
  EXPECT_EQ(grid.height, 3);
  EXPECT_EQ(at(grid, 3, 0), 2);
}

TEST(ImageGrid, RefusesMismatchedOrNoImages) {
  EXPECT_THROW(make_image_grid({}, 4), std::invalid_argument);
  EXPECT_THROW(make_image_grid({solid(3, 3, 1), solid(4, 3, 1)}, 4), std::invalid_argument);
  EXPECT_THROW(make_image_grid({solid(3, 3, 1)}, 0), std::invalid_argument);
}

}  // namespace
}  // namespace sdtrain

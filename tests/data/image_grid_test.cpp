// make_image_grid lays images out as torchvision.utils.make_grid (padding 2, pad value 0).
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

std::uint8_t at(const Image& image, int x, int y, int c = 0) {
  return image.pixels[(static_cast<std::size_t>(y) * image.width + x) * image.channels + c];
}

TEST(ImageGrid, LayoutMatchesMakeGrid) {
  // make_grid(nrow=2, padding=2) of three 4x3 images: 2 columns, 2 rows, 2 px borders.
  const Image grid = make_image_grid({solid(4, 3, 10), solid(4, 3, 20), solid(4, 3, 30)}, 2);
  EXPECT_EQ(grid.width, 2 * (4 + 2) + 2);
  EXPECT_EQ(grid.height, 2 * (3 + 2) + 2);
  EXPECT_EQ(at(grid, 0, 0), 0);
  EXPECT_EQ(at(grid, 2, 2), 10);
  EXPECT_EQ(at(grid, 5, 4), 10);
  EXPECT_EQ(at(grid, 6, 2), 0);  // the gap between columns
  EXPECT_EQ(at(grid, 8, 2), 20);
  EXPECT_EQ(at(grid, 2, 7), 30);
  EXPECT_EQ(at(grid, 8, 7), 0);  // the empty last cell
}

TEST(ImageGrid, FewerImagesThanColumnsShrinksTheRow) {
  const Image grid = make_image_grid({solid(4, 4, 1)}, 8, 0);
  EXPECT_EQ(grid.width, 4);
  EXPECT_EQ(grid.height, 4);
  EXPECT_EQ(at(grid, 3, 3), 1);
}

TEST(ImageGrid, RefusesMixedSizesAndEmptyInput) {
  EXPECT_THROW(make_image_grid({}, 2), std::invalid_argument);
  EXPECT_THROW(make_image_grid({solid(4, 4, 1), solid(4, 5, 1)}, 2), std::invalid_argument);
  EXPECT_THROW(make_image_grid({solid(4, 4, 1)}, 0), std::invalid_argument);
}

}  // namespace
}  // namespace sdtrain

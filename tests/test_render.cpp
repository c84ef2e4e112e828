#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "distillery/core/error.h"
#include "distillery/core/png.h"
#include "distillery/data/palette.h"
#include "distillery/data/plot.h"
#include "distillery/data/render.h"

using namespace distillery;
namespace fs = std::filesystem;

namespace {

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("distillery_render_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    torch::manual_seed(5);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  void expect_png_error(const std::function<void()>& action, const std::string& file) {
    try {
      action();
      FAIL() << "expected DataError for " << file;
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find(fs::path(file).filename().string()), std::string::npos) << e.what();
    }
  }

  fs::path dir_;
};

std::vector<uint8_t> read_bytes(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& file, const std::vector<uint8_t>& bytes) {
  std::ofstream(file, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

int64_t count_set_bits(const std::string& text) {
  int64_t bits = 0;
  for (char c : text)
    for (uint8_t row : glyph_rows(c)) bits += __builtin_popcount(row);
  return bits;
}

}  // namespace

TEST_F(TempDir, PngRoundTrips) {
  torch::Tensor grey = torch::randint(0, 256, {13, 17}, torch::kUInt8);
  torch::Tensor rgb = torch::randint(0, 256, {9, 21, 3}, torch::kUInt8);
  torch::Tensor rgba = torch::randint(0, 256, {5, 6, 4}, torch::kUInt8);
  write_png(path("grey.png"), grey);
  write_png(path("rgb.png"), rgb);
  write_png(path("rgba.png"), rgba);
  torch::Tensor grey_back = read_png(path("grey.png"));
  ASSERT_EQ(grey_back.sizes(), (std::vector<int64_t>{13, 17, 1}));
  EXPECT_TRUE(torch::equal(grey_back.squeeze(2), grey));
  EXPECT_TRUE(torch::equal(read_png(path("rgb.png")), rgb));
  EXPECT_TRUE(torch::equal(read_png(path("rgba.png")), rgba));
  // Non-contiguous input is fine; the temp file is gone after the rename.
  write_png(path("rgb.png"), rgb.flip({1}));
  EXPECT_TRUE(torch::equal(read_png(path("rgb.png")), rgb.flip({1})));
  int64_t files = std::distance(fs::directory_iterator(dir_), fs::directory_iterator());
  EXPECT_EQ(files, 3);
}

TEST_F(TempDir, PalettePngKeepsIndices) {
  torch::Tensor indices = torch::randint(0, 12, {7, 9}, torch::kUInt8);
  indices[0][0] = 255;
  write_png_palette(path("labels.png"), indices, label_palette_list());
  EXPECT_TRUE(torch::equal(read_png_indices(path("labels.png")), indices));
  // Read as a picture: expanded to the palette colours.
  torch::Tensor expanded = read_png(path("labels.png"));
  EXPECT_TRUE(torch::equal(expanded, colorize(indices)));
  // A small palette with 2 entries (libpng packs to fewer bits) still round-trips.
  torch::Tensor binary = torch::randint(0, 2, {5, 11}, torch::kUInt8);
  write_png_palette(path("binary.png"), binary, {{0, 0, 0}, {255, 0, 0}});
  EXPECT_TRUE(torch::equal(read_png_indices(path("binary.png")), binary));
  expect_png_error([&] { write_png_palette(path("bad.png"), indices, {{0, 0, 0}}); }, path("bad.png"));
  write_png(path("rgb.png"), torch::zeros({4, 4, 3}, torch::kUInt8));
  expect_png_error([&] { read_png_indices(path("rgb.png")); }, path("rgb.png"));
}

TEST_F(TempDir, CorruptOrMissingPngThrowsNamingTheFile) {
  expect_png_error([&] { read_png(path("missing.png")); }, path("missing.png"));
  write_bytes(path("text.png"), {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'});
  expect_png_error([&] { read_png(path("text.png")); }, path("text.png"));

  write_png(path("good.png"), torch::randint(0, 256, {40, 40, 3}, torch::kUInt8));
  std::vector<uint8_t> bytes = read_bytes(path("good.png"));
  write_bytes(path("cut.png"), std::vector<uint8_t>(bytes.begin(), bytes.begin() + bytes.size() / 2));
  expect_png_error([&] { read_png(path("cut.png")); }, path("cut.png"));
  std::vector<uint8_t> garbled = bytes;
  for (size_t i = 40; i < garbled.size() - 20; i += 7) garbled[i] ^= 0x5a;
  write_bytes(path("garbled.png"), garbled);
  expect_png_error([&] { read_png(path("garbled.png")); }, path("garbled.png"));
  // Signature only.
  write_bytes(path("signature.png"), std::vector<uint8_t>(bytes.begin(), bytes.begin() + 8));
  expect_png_error([&] { read_png(path("signature.png")); }, path("signature.png"));

  expect_png_error([&] { write_png(path("no_dir/x.png"), torch::zeros({2, 2}, torch::kUInt8)); },
                   path("no_dir/x.png"));
  expect_png_error([&] { write_png(path("float.png"), torch::zeros({2, 2})); }, path("float.png"));
}

TEST(Render, GlyphsAreTheHandDrawnFont) {
  // 'H': #...# on every row but the middle one, which is #####.
  std::array<uint8_t, 7> h{0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11};
  EXPECT_EQ(glyph_rows('H'), h);
  std::array<uint8_t, 7> blank{};
  EXPECT_EQ(glyph_rows(' '), blank);
  EXPECT_EQ(glyph_rows('\x01'), glyph_rows('?'));
  // Every printable character other than space has ink, and no two are identical.
  std::set<std::array<uint8_t, 7>> distinct;
  for (int c = 33; c < 127; ++c) {
    EXPECT_GT(count_set_bits(std::string(1, char(c))), 0) << char(c);
    distinct.insert(glyph_rows(char(c)));
  }
  EXPECT_EQ(distinct.size(), 94u);
}

TEST(Render, DrawTextChangesOnlyItsBox) {
  for (int64_t scale : {1, 3}) {
    torch::Tensor canvas = make_canvas(60, 140, {0, 0, 0});
    const std::string text = "Hi, 42!";
    const int64_t x = 7, y = 11;
    draw_text(canvas, x, y, text, {255, 100, 0}, scale);
    int64_t width = text_width(text, scale), height = text_height(text, scale);
    EXPECT_EQ(width, (7 * 6 - 1) * scale);
    EXPECT_EQ(height, 7 * scale);
    torch::Tensor changed = (canvas != 0).any(2);
    torch::Tensor box = torch::zeros_like(changed);
    box.slice(0, y, y + height).slice(1, x, x + width).fill_(true);
    EXPECT_FALSE((changed & ~box).any().item<bool>()) << "scale " << scale;
    // Exactly the glyphs' set bits, each as a scale x scale block, in the requested colour.
    EXPECT_EQ(changed.sum().item<int64_t>(), count_set_bits(text) * scale * scale);
    torch::Tensor red = canvas.select(2, 0).masked_select(changed);
    EXPECT_TRUE((red == 255).all().item<bool>());
  }
  // Clipped at the canvas edge without error; a second line starts 9 pixels lower.
  torch::Tensor small = make_canvas(10, 10);
  draw_text(small, 6, -3, "WW", {1, 1, 1});
  EXPECT_GT((small != 0).sum().item<int64_t>(), 0);
  EXPECT_EQ(text_height("a\nb"), 16);
  EXPECT_EQ(text_width("abc\nabcdef"), 35);
}

TEST(Render, ColorizeUsesThePalette) {
  const auto& palette = label_palette();
  torch::Tensor labels = torch::tensor({0, 1, 10, 255, 300, -1}, torch::kLong).view({2, 3});
  torch::Tensor rgb = colorize(labels);
  ASSERT_EQ(rgb.sizes(), (std::vector<int64_t>{2, 3, 3}));
  std::vector<int> expected_ids{0, 1, 10, 255, 255, 255};
  for (int i = 0; i < 6; ++i)
    for (int c = 0; c < 3; ++c)
      EXPECT_EQ(rgb[i / 3][i % 3][c].item<int64_t>(), palette[expected_ids[i]][c]) << i;
  // Background dark, ignore white, 0..10 and 255 all distinct.
  EXPECT_LT(palette[0][0] + palette[0][1] + palette[0][2], 100);
  EXPECT_EQ(palette[255], (Rgb{255, 255, 255}));
  std::set<Rgb> distinct;
  for (int i = 0; i <= 10; ++i) distinct.insert(palette[i]);
  distinct.insert(palette[255]);
  EXPECT_EQ(distinct.size(), 12u);
}

TEST(Render, OverlayBlendsLabelledPixelsOnly) {
  torch::Tensor image = torch::tensor({100, 200, 50, 0}, torch::kUInt8).view({2, 2});
  torch::Tensor labels = torch::tensor({0, 3, 255, 10}, torch::kUInt8).view({2, 2});
  torch::Tensor out = overlay(image, labels, 0.25);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{2, 2, 3}));
  const auto& palette = label_palette();
  std::vector<int> grey{100, 200, 50, 0}, ids{0, 3, 255, 10};
  for (int i = 0; i < 4; ++i)
    for (int c = 0; c < 3; ++c) {
      double expected = ids[i] == 0 ? grey[i] : std::round(0.75 * grey[i] + 0.25 * palette[ids[i]][c]);
      EXPECT_EQ(out[i / 2][i % 2][c].item<int64_t>(), static_cast<int64_t>(expected)) << i << "," << c;
    }
}

TEST(Render, TileGridLayout) {
  std::vector<torch::Tensor> tiles;
  for (int i = 0; i < 3; ++i) tiles.push_back(torch::full({4, 5}, 10 * (i + 1), torch::kUInt8));
  torch::Tensor grid = tile_grid(tiles, 2, 1, 2, {7, 7, 7});
  // 2 rows of 8-pixel cells, 2 columns of 10-pixel cells, 1-pixel gaps around them.
  ASSERT_EQ(grid.sizes(), (std::vector<int64_t>{2 * 8 + 3, 2 * 10 + 3, 3}));
  EXPECT_EQ(grid[0][0][0].item<int64_t>(), 7);
  EXPECT_EQ(grid[1][1][0].item<int64_t>(), 10);
  EXPECT_EQ(grid[8][10][0].item<int64_t>(), 10);
  EXPECT_EQ(grid[1][12][1].item<int64_t>(), 20);
  EXPECT_EQ(grid[10][1][2].item<int64_t>(), 30);
  EXPECT_EQ(grid[10][12][0].item<int64_t>(), 7);  // no fourth tile
}

TEST(Render, LegendHasOneRowPerClass) {
  torch::Tensor key = legend({"background", "a", "bb"}, 1, true);
  // 4 rows (3 classes + ignore) of 12 pixels plus 4-pixel margins.
  EXPECT_EQ(key.size(0), 4 * 12 + 8);
  EXPECT_EQ(key.size(1), 4 + 9 + 4 + text_width("255 background") + 4);
  // Row 1's swatch (inside its frame) has class 1's colour.
  const auto& palette = label_palette();
  for (int c = 0; c < 3; ++c) EXPECT_EQ(key[4 + 12 + 4][4 + 4][c].item<int64_t>(), palette[1][c]);
}

TEST_F(TempDir, SceneGridPicture) {
  TensorDataset data;
  data.images = torch::randint(0, 256, {5, 1, 16, 16}, torch::kUInt8);
  data.targets = torch::randint(0, 4, {5, 16, 16}, torch::kUInt8);
  data.num_classes = 4;
  data.class_names = {"background", "one", "two", "three"};
  data.task = Task::Segmentation;
  write_scene_grid(path("scenes.png"), data, 4, 3);
  torch::Tensor picture = read_png(path("scenes.png"));
  // Tile: image | overlay at x3 with a 2-pixel gap = 48 x 98; 2 rows x 3 columns, 12-pixel pads.
  torch::Tensor key = legend(data.class_names, 2, true);
  int64_t grid_height = 2 * 48 + 3 * 12, grid_width = 3 * 98 + 4 * 12;
  ASSERT_EQ(picture.size(0), grid_height + key.size(0));
  ASSERT_EQ(picture.size(1), std::max(grid_width, key.size(1) + 12));
  // Scene 0's image, enlarged, sits at (12, 12); its overlay 50 pixels to the right.
  int64_t value = data.images[0][0][2][5].item<int64_t>();
  for (int c = 0; c < 3; ++c) EXPECT_EQ(picture[12 + 2 * 3 + 1][12 + 5 * 3 + 2][c].item<int64_t>(), value);
  torch::Tensor expected_overlay = overlay(data.images[0][0], data.targets[0], 0.55);
  for (int c = 0; c < 3; ++c)
    EXPECT_EQ(picture[12 + 2 * 3][12 + 50 + 5 * 3][c].item<int64_t>(), expected_overlay[2][5][c].item<int64_t>());

  TensorDataset classes;
  classes.images = torch::randint(0, 256, {3, 1, 28, 28}, torch::kUInt8);
  classes.targets = torch::tensor({0, 2, 1}, torch::kLong);
  classes.class_names = {"zero", "one", "two"};
  classes.num_classes = 3;
  classes.task = Task::Classification;
  write_scene_grid(path("classes.png"), classes, 10, 2);
  torch::Tensor grid = read_png(path("classes.png"));
  EXPECT_EQ(grid.size(0), 2 * (84 + 11) + 3 * 12);
  EXPECT_EQ(grid.size(1), 2 * 84 + 3 * 12);
}

TEST(Plot, NiceTicks) {
  std::vector<double> unit = nice_ticks(0, 1);
  ASSERT_EQ(unit.size(), 6u);
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(unit[i], 0.2 * i, 1e-12);
  std::vector<double> big = nice_ticks(0, 2500);
  EXPECT_EQ(big, (std::vector<double>{0, 500, 1000, 1500, 2000, 2500}));
  std::vector<double> odd = nice_ticks(0.13, 0.87);
  EXPECT_LE(odd.front(), 0.13);
  EXPECT_GE(odd.back(), 0.87);
  EXPECT_LE(odd.size(), 9u);
  EXPECT_NEAR(odd.front(), 0.0, 1e-12);
  EXPECT_NEAR(odd.back(), 1.0, 1e-12);
}

TEST_F(TempDir, LinePlotDrawsSeries) {
  Series diagonal{"loss", {0, 0.25, 0.5, 0.75, 1.0}, {0, 0.25, 0.5, 0.75, 1.0}};
  Series flat{"mIoU", {0, 1}, {0.9, 0.9}};
  torch::Tensor plot = render_line_plot("curves", "step", "value", {diagonal, flat}, 640, 400);
  ASSERT_EQ(plot.sizes(), (std::vector<int64_t>{400, 640, 3}));
  auto has_colour = [&](const torch::Tensor& region, Rgb rgb) {
    return ((region.select(2, 0) == rgb[0]) & (region.select(2, 1) == rgb[1]) &
            (region.select(2, 2) == rgb[2])).sum().item<int64_t>();
  };
  const Rgb first{31, 119, 180}, second{255, 127, 14};
  EXPECT_GT(has_colour(plot, first), 200);
  EXPECT_GT(has_colour(plot, second), 200);
  // The diagonal passes through the middle of the plot area; the lower-right corner is empty.
  // Plot area: x from `left` to 620, y from 36 to 360; find left from the axis line.
  int64_t left = 0;
  while (left < 640 && plot[200][left][0].item<int64_t>() != 20) ++left;
  int64_t cx = (left + 620) / 2, cy = (36 + 360) / 2;
  EXPECT_GT(has_colour(plot.slice(0, cy - 3, cy + 4).slice(1, cx - 3, cx + 4), first), 0);
  EXPECT_EQ(has_colour(plot.slice(0, 300, 350).slice(1, 560, 615), first), 0);
  // NaNs break lines instead of failing.
  Series gaps{"gaps", {0, 1, 2, 3}, {1, std::nan(""), 2, 3}};
  write_line_plot(path("plot.png"), "t", "x", "y", {gaps});
  EXPECT_EQ(read_png(path("plot.png")).sizes(), (std::vector<int64_t>{500, 800, 3}));
  write_line_plot(path("empty.png"), "nothing", "x", "y", {});
  EXPECT_TRUE(fs::exists(path("empty.png")));
}

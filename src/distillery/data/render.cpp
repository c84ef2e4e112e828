#include "distillery/data/render.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>

#include "distillery/core/png.h"

namespace distillery {
namespace {

// The printable ASCII characters 32..126, each as 7 rows of 5 columns ('#' = ink).
const char* const kFontRows[95] = {
    "..... ..... ..... ..... ..... ..... .....",  // space
    "..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#..",  // '!'
    ".#.#. .#.#. .#.#. ..... ..... ..... .....",  // '"'
    ".#.#. .#.#. ##### .#.#. ##### .#.#. .#.#.",  // '#'
    "..#.. .#### #.#.. .###. ..#.# ####. ..#..",  // '$'
    "##... ##..# ...#. ..#.. .#... #..## ...##",  // '%'
    ".##.. #..#. #.#.. .#... #.#.# #..#. .##.#",  // '&'
    "..#.. ..#.. .#... ..... ..... ..... .....",  // '''
    "...#. ..#.. .#... .#... .#... ..#.. ...#.",  // '('
    ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",  // ')'
    "..... ..#.. #.#.# .###. #.#.# ..#.. .....",  // '*'
    "..... ..#.. ..#.. ##### ..#.. ..#.. .....",  // '+'
    "..... ..... ..... ..... .##.. ..#.. .#...",  // ','
    "..... ..... ..... ##### ..... ..... .....",  // '-'
    "..... ..... ..... ..... ..... .##.. .##..",  // '.'
    "..... ....# ...#. ..#.. .#... #.... .....",  // '/'
    ".###. #...# #..## #.#.# ##..# #...# .###.",  // '0'
    "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",  // '1'
    ".###. #...# ....# ...#. ..#.. .#... #####",  // '2'
    "##### ...#. ..#.. ...#. ....# #...# .###.",  // '3'
    "...#. ..##. .#.#. #..#. ##### ...#. ...#.",  // '4'
    "##### #.... ####. ....# ....# #...# .###.",  // '5'
    "..##. .#... #.... ####. #...# #...# .###.",  // '6'
    "##### ....# ...#. ..#.. .#... .#... .#...",  // '7'
    ".###. #...# #...# .###. #...# #...# .###.",  // '8'
    ".###. #...# #...# .#### ....# ...#. .##..",  // '9'
    "..... .##.. .##.. ..... .##.. .##.. .....",  // ':'
    "..... .##.. .##.. ..... .##.. ..#.. .#...",  // ';'
    "...#. ..#.. .#... #.... .#... ..#.. ...#.",  // '<'
    "..... ..... ##### ..... ##### ..... .....",  // '='
    ".#... ..#.. ...#. ....# ...#. ..#.. .#...",  // '>'
    ".###. #...# ....# ...#. ..#.. ..... ..#..",  // '?'
    ".###. #...# ....# .##.# #.#.# #.#.# .###.",  // '@'
    ".###. #...# #...# ##### #...# #...# #...#",  // 'A'
    "####. #...# #...# ####. #...# #...# ####.",  // 'B'
    ".###. #...# #.... #.... #.... #...# .###.",  // 'C'
    "###.. #..#. #...# #...# #...# #..#. ###..",  // 'D'
    "##### #.... #.... ####. #.... #.... #####",  // 'E'
    "##### #.... #.... ####. #.... #.... #....",  // 'F'
    ".###. #...# #.... #.### #...# #...# .####",  // 'G'
    "#...# #...# #...# ##### #...# #...# #...#",  // 'H'
    ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",  // 'I'
    "..### ...#. ...#. ...#. ...#. #..#. .##..",  // 'J'
    "#...# #..#. #.#.. ##... #.#.. #..#. #...#",  // 'K'
    "#.... #.... #.... #.... #.... #.... #####",  // 'L'
    "#...# ##.## #.#.# #.#.# #...# #...# #...#",  // 'M'
    "#...# #...# ##..# #.#.# #..## #...# #...#",  // 'N'
    ".###. #...# #...# #...# #...# #...# .###.",  // 'O'
    "####. #...# #...# ####. #.... #.... #....",  // 'P'
    ".###. #...# #...# #...# #.#.# #..#. .##.#",  // 'Q'
    "####. #...# #...# ####. #.#.. #..#. #...#",  // 'R'
    ".#### #.... #.... .###. ....# ....# ####.",  // 'S'
    "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",  // 'T'
    "#...# #...# #...# #...# #...# #...# .###.",  // 'U'
    "#...# #...# #...# #...# #...# .#.#. ..#..",  // 'V'
    "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",  // 'W'
    "#...# #...# .#.#. ..#.. .#.#. #...# #...#",  // 'X'
    "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..",  // 'Y'
    "##### ....# ...#. ..#.. .#... #.... #####",  // 'Z'
    ".###. .#... .#... .#... .#... .#... .###.",  // '['
    "..... #.... .#... ..#.. ...#. ....# .....",  // backslash
    ".###. ...#. ...#. ...#. ...#. ...#. .###.",  // ']'
    "..#.. .#.#. #...# ..... ..... ..... .....",  // '^'
    "..... ..... ..... ..... ..... ..... #####",  // '_'
    ".#... ..#.. ...#. ..... ..... ..... .....",  // '`'
    "..... ..... .###. ....# .#### #...# .####",  // 'a'
    "#.... #.... #.##. ##..# #...# #...# ####.",  // 'b'
    "..... ..... .###. #.... #.... #...# .###.",  // 'c'
    "....# ....# .##.# #..## #...# #...# .####",  // 'd'
    "..... ..... .###. #...# ##### #.... .###.",  // 'e'
    "..##. .#..# .#... ###.. .#... .#... .#...",  // 'f'
    "..... .#### #...# #...# .#### ....# .###.",  // 'g'
    "#.... #.... #.##. ##..# #...# #...# #...#",  // 'h'
    "..#.. ..... .##.. ..#.. ..#.. ..#.. .###.",  // 'i'
    "...#. ..... ..##. ...#. ...#. #..#. .##..",  // 'j'
    "#.... #.... #..#. #.#.. ##... #.#.. #..#.",  // 'k'
    ".##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",  // 'l'
    "..... ..... ##.#. #.#.# #.#.# #...# #...#",  // 'm'
    "..... ..... #.##. ##..# #...# #...# #...#",  // 'n'
    "..... ..... .###. #...# #...# #...# .###.",  // 'o'
    "..... ..... ####. #...# ####. #.... #....",  // 'p'
    "..... ..... .##.# #..## .#### ....# ....#",  // 'q'
    "..... ..... #.##. ##..# #.... #.... #....",  // 'r'
    "..... ..... .###. #.... .###. ....# ####.",  // 's'
    ".#... .#... ###.. .#... .#... .#..# ..##.",  // 't'
    "..... ..... #...# #...# #...# #..## .##.#",  // 'u'
    "..... ..... #...# #...# #...# .#.#. ..#..",  // 'v'
    "..... ..... #...# #...# #.#.# #.#.# .#.#.",  // 'w'
    "..... ..... #...# .#.#. ..#.. .#.#. #...#",  // 'x'
    "..... ..... #...# #...# .#### ....# .###.",  // 'y'
    "..... ..... ##### ...#. ..#.. .#... #####",  // 'z'
    "...#. ..#.. ..#.. .#... ..#.. ..#.. ...#.",  // '{'
    "..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",  // '|'
    ".#... ..#.. ..#.. ...#. ..#.. ..#.. .#...",  // '}'
    "..... ..... .#... #.#.# ...#. ..... .....",  // '~'
};

std::array<std::array<uint8_t, 7>, 95> build_font() {
  std::array<std::array<uint8_t, 7>, 95> font{};
  for (int c = 0; c < 95; ++c)
    for (int row = 0; row < 7; ++row)
      for (int col = 0; col < 5; ++col)
        if (kFontRows[c][row * 6 + col] == '#') font[c][row] |= uint8_t(1 << (4 - col));
  return font;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines(1);
  for (char c : text) {
    if (c == '\n')
      lines.emplace_back();
    else
      lines.back() += c;
  }
  return lines;
}

void check_canvas(const torch::Tensor& canvas) {
  TORCH_CHECK(canvas.dim() == 3 && canvas.size(2) == 3 && canvas.scalar_type() == torch::kUInt8 &&
                  canvas.is_contiguous(),
              "canvas must be a contiguous uint8 [H, W, 3] tensor");
}

// Puts two RGB images side by side with a gap.
torch::Tensor side_by_side(const torch::Tensor& left, const torch::Tensor& right, int64_t gap,
                           Rgb background) {
  int64_t height = std::max(left.size(0), right.size(0));
  torch::Tensor out = make_canvas(height, left.size(1) + gap + right.size(1), background);
  paste(out, left, 0, 0);
  paste(out, right, left.size(1) + gap, 0);
  return out;
}

}  // namespace

std::array<uint8_t, 7> glyph_rows(char c) {
  static const auto font = build_font();
  int code = static_cast<unsigned char>(c);
  if (code < 32 || code > 126) code = '?';
  return font[code - 32];
}

torch::Tensor make_canvas(int64_t height, int64_t width, Rgb fill) {
  torch::Tensor canvas = torch::empty({height, width, 3}, torch::kUInt8);
  for (int c = 0; c < 3; ++c) canvas.select(2, c).fill_(static_cast<int64_t>(fill[c]));
  return canvas;
}

torch::Tensor to_rgb(const torch::Tensor& image) {
  TORCH_CHECK(image.scalar_type() == torch::kUInt8, "to_rgb expects a uint8 image");
  if (image.dim() == 2) return image.unsqueeze(2).expand({-1, -1, 3}).contiguous();
  TORCH_CHECK(image.dim() == 3, "to_rgb expects [H, W], [H, W, C] or [1, H, W]");
  if (image.size(2) == 3) return image.contiguous();
  if (image.size(2) == 1) return image.expand({-1, -1, 3}).contiguous();
  if (image.size(0) == 1) return image[0].unsqueeze(2).expand({-1, -1, 3}).contiguous();
  if (image.size(0) == 3) return image.permute({1, 2, 0}).contiguous();
  if (image.size(2) == 4) return image.slice(2, 0, 3).contiguous();
  TORCH_CHECK(false, "to_rgb: unsupported image shape ", image.sizes());
}

torch::Tensor overlay(const torch::Tensor& image, const torch::Tensor& labels, double alpha) {
  torch::Tensor rgb = to_rgb(image);
  TORCH_CHECK(labels.dim() == 2 && labels.size(0) == rgb.size(0) && labels.size(1) == rgb.size(1),
              "overlay: labels must be [H, W] matching the image");
  torch::Tensor colours = colorize(labels).to(torch::kFloat);
  torch::Tensor blended = rgb.to(torch::kFloat) * (1 - alpha) + colours * alpha;
  torch::Tensor labelled = (labels != 0).unsqueeze(2);
  // Round half up (torch's round() goes to even).
  torch::Tensor rounded = blended.add_(0.5).floor_().clamp_(0, 255).to(torch::kUInt8);
  return torch::where(labelled, rounded, rgb).contiguous();
}

torch::Tensor upscale(const torch::Tensor& image, int64_t factor) {
  TORCH_CHECK(factor >= 1, "upscale factor must be >= 1");
  if (factor == 1) return image;
  torch::Tensor out = image.repeat_interleave(factor, 0).repeat_interleave(factor, 1);
  return out.contiguous();
}

void paste(const torch::Tensor& canvas, const torch::Tensor& image, int64_t x, int64_t y) {
  check_canvas(canvas);
  torch::Tensor rgb = to_rgb(image);
  int64_t x0 = std::max<int64_t>(x, 0), y0 = std::max<int64_t>(y, 0);
  int64_t x1 = std::min(x + rgb.size(1), canvas.size(1));
  int64_t y1 = std::min(y + rgb.size(0), canvas.size(0));
  if (x0 >= x1 || y0 >= y1) return;
  canvas.slice(0, y0, y1).slice(1, x0, x1).copy_(rgb.slice(0, y0 - y, y1 - y).slice(1, x0 - x, x1 - x));
}

void fill_rect(const torch::Tensor& canvas, int64_t x, int64_t y, int64_t width, int64_t height,
               Rgb rgb) {
  check_canvas(canvas);
  int64_t x0 = std::max<int64_t>(x, 0), y0 = std::max<int64_t>(y, 0);
  int64_t x1 = std::min(x + width, canvas.size(1)), y1 = std::min(y + height, canvas.size(0));
  uint8_t* data = canvas.data_ptr<uint8_t>();
  const int64_t row_stride = canvas.size(1) * 3;
  for (int64_t py = y0; py < y1; ++py)
    for (int64_t px = x0; px < x1; ++px)
      for (int c = 0; c < 3; ++c) data[py * row_stride + px * 3 + c] = rgb[c];
}

int64_t text_width(const std::string& text, int64_t scale) {
  size_t widest = 0;
  for (const auto& line : split_lines(text)) widest = std::max(widest, line.size());
  return widest == 0 ? 0 : (static_cast<int64_t>(widest) * kGlyphAdvance - 1) * scale;
}

int64_t text_height(const std::string& text, int64_t scale) {
  int64_t lines = static_cast<int64_t>(split_lines(text).size());
  return ((lines - 1) * kLineAdvance + kGlyphHeight) * scale;
}

void draw_text(const torch::Tensor& canvas, int64_t x, int64_t y, const std::string& text, Rgb rgb,
               int64_t scale) {
  check_canvas(canvas);
  TORCH_CHECK(scale >= 1, "draw_text: scale must be >= 1");
  const auto lines = split_lines(text);
  for (size_t l = 0; l < lines.size(); ++l) {
    const int64_t line_y = y + static_cast<int64_t>(l) * kLineAdvance * scale;
    for (size_t i = 0; i < lines[l].size(); ++i) {
      const auto rows = glyph_rows(lines[l][i]);
      const int64_t glyph_x = x + static_cast<int64_t>(i) * kGlyphAdvance * scale;
      for (int row = 0; row < kGlyphHeight; ++row)
        for (int col = 0; col < kGlyphWidth; ++col)
          if (rows[row] & (1 << (4 - col)))
            fill_rect(canvas, glyph_x + col * scale, line_y + row * scale, scale, scale, rgb);
    }
  }
}

torch::Tensor tile_grid(const std::vector<torch::Tensor>& tiles, int64_t cols, int64_t pad,
                        int64_t upscale_factor, Rgb background) {
  TORCH_CHECK(cols >= 1 && pad >= 0 && upscale_factor >= 1, "tile_grid: bad layout arguments");
  if (tiles.empty()) return make_canvas(1, 1, background);
  std::vector<torch::Tensor> cells;
  int64_t cell_height = 0, cell_width = 0;
  for (const auto& tile : tiles) {
    cells.push_back(upscale(to_rgb(tile), upscale_factor));
    cell_height = std::max(cell_height, cells.back().size(0));
    cell_width = std::max(cell_width, cells.back().size(1));
  }
  const int64_t count = static_cast<int64_t>(cells.size());
  const int64_t used_cols = std::min(cols, count), rows = (count + cols - 1) / cols;
  torch::Tensor canvas = make_canvas(rows * cell_height + (rows + 1) * pad,
                                     used_cols * cell_width + (used_cols + 1) * pad, background);
  for (int64_t i = 0; i < count; ++i)
    paste(canvas, cells[i], pad + (i % cols) * (cell_width + pad), pad + (i / cols) * (cell_height + pad));
  return canvas;
}

torch::Tensor legend(const std::vector<std::string>& class_names, int64_t scale,
                     bool include_ignore) {
  std::vector<std::pair<int64_t, std::string>> entries;
  for (size_t i = 0; i < class_names.size(); ++i)
    entries.emplace_back(static_cast<int64_t>(i), class_names[i]);
  if (include_ignore) entries.emplace_back(255, "ignore");
  const int64_t margin = 4 * scale, swatch = 9 * scale, row_height = 12 * scale;
  int64_t widest = 0;
  std::vector<std::string> texts;
  for (const auto& [id, name] : entries) {
    texts.push_back(fmt::format("{:>3} {}", id, name));
    widest = std::max(widest, text_width(texts.back(), scale));
  }
  const auto& palette = label_palette();
  torch::Tensor canvas = make_canvas(2 * margin + row_height * static_cast<int64_t>(entries.size()),
                                     2 * margin + swatch + margin + widest, {40, 40, 44});
  for (size_t i = 0; i < entries.size(); ++i) {
    int64_t top = margin + static_cast<int64_t>(i) * row_height;
    fill_rect(canvas, margin, top, swatch, swatch, {200, 200, 200});  // frame: dark colours stay visible
    fill_rect(canvas, margin + scale, top + scale, swatch - 2 * scale, swatch - 2 * scale,
              palette[static_cast<size_t>(entries[i].first)]);
    draw_text(canvas, margin + swatch + margin, top + scale, texts[i], {230, 230, 230}, scale);
  }
  return canvas;
}

void write_scene_grid(const std::string& png_path, const TensorDataset& dataset, int64_t count,
                      int64_t cols) {
  TORCH_CHECK(dataset.images.defined() && dataset.images.dim() == 4,
              "write_scene_grid: dataset images must be [N, C, H, W]");
  TORCH_CHECK(cols >= 1, "write_scene_grid: cols must be >= 1");
  constexpr int64_t kEnlarge = 3, kPairGap = 2, kTilePad = 12, kLegendScale = 2;
  const Rgb background{40, 40, 44};
  count = std::max<int64_t>(0, std::min(count, dataset.size()));
  std::vector<torch::Tensor> tiles;
  for (int64_t i = 0; i < count; ++i) {
    torch::Tensor image = upscale(to_rgb(dataset.images[i].permute({1, 2, 0})), kEnlarge);
    if (dataset.task == Task::Segmentation) {
      torch::Tensor labels = dataset.targets[i];
      torch::Tensor mixed = upscale(overlay(dataset.images[i].permute({1, 2, 0}), labels, 0.55), kEnlarge);
      tiles.push_back(side_by_side(image, mixed, kPairGap, background));
    } else {
      int64_t label = dataset.targets[i].item<int64_t>();
      std::string name = label >= 0 && label < static_cast<int64_t>(dataset.class_names.size())
                             ? dataset.class_names[static_cast<size_t>(label)]
                             : std::to_string(label);
      int64_t max_chars = std::max<int64_t>(1, (image.size(1) + 1) / kGlyphAdvance);
      if (static_cast<int64_t>(name.size()) > max_chars) name.resize(static_cast<size_t>(max_chars));
      torch::Tensor tile = make_canvas(image.size(0) + 11, image.size(1), background);
      paste(tile, image, 0, 0);
      draw_text(tile, 0, image.size(0) + 3, name, {230, 230, 230});
      tiles.push_back(tile);
    }
  }
  torch::Tensor grid = tile_grid(tiles, cols, kTilePad, 1, background);
  torch::Tensor picture = grid;
  if (dataset.task == Task::Segmentation) {
    torch::Tensor key = legend(dataset.class_names, kLegendScale, true);
    picture = make_canvas(grid.size(0) + key.size(0), std::max(grid.size(1), key.size(1) + kTilePad), background);
    paste(picture, grid, 0, 0);
    paste(picture, key, kTilePad - 4 * kLegendScale, grid.size(0));
  }
  write_png(png_path, picture);
}

}  // namespace distillery

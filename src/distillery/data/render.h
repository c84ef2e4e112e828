// Drawing on uint8 RGB canvases [H, W, 3]: label overlays, tile grids, text in a built-in 5x7
// bitmap font, legends, and the scene grid behind `distill show-data`.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "distillery/data/palette.h"
#include "distillery/data/tensor_dataset.h"

namespace distillery {

// Font metrics: each glyph is 5x7 pixels; characters advance by 6, lines by 9 (times scale).
constexpr int64_t kGlyphWidth = 5, kGlyphHeight = 7, kGlyphAdvance = 6, kLineAdvance = 9;

// A blank canvas uint8 [height, width, 3].
torch::Tensor make_canvas(int64_t height, int64_t width, Rgb fill = {0, 0, 0});

// [H, W], [H, W, 1], [1, H, W] (grey) or [H, W, 3] -> uint8 [H, W, 3].
torch::Tensor to_rgb(const torch::Tensor& image);

// Blends each labelled pixel with its palette colour: (1 - alpha) * image + alpha * colour.
// Background (0) is left as it is, so the picture stays readable; ignore (255) turns whitish.
torch::Tensor overlay(const torch::Tensor& image, const torch::Tensor& labels, double alpha = 0.5);

// Nearest-neighbour enlargement of an image [H, W] or [H, W, C] by an integer factor.
torch::Tensor upscale(const torch::Tensor& image, int64_t factor);

// Tiles (each as accepted by to_rgb, any sizes) upscaled and laid out row-major in `cols`
// columns, `pad` pixels apart (after upscaling) on a dark background.
torch::Tensor tile_grid(const std::vector<torch::Tensor>& tiles, int64_t cols, int64_t pad = 2,
                        int64_t upscale_factor = 1, Rgb background = {40, 40, 44});

// Pastes `image` (uint8 [h, w, 3]) into `canvas` with its top-left at (x, y), clipped.
void paste(const torch::Tensor& canvas, const torch::Tensor& image, int64_t x, int64_t y);
void fill_rect(const torch::Tensor& canvas, int64_t x, int64_t y, int64_t width, int64_t height,
               Rgb rgb);

// Draws ASCII text (other bytes as '?', '\n' starts a new line) with its top-left at (x, y),
// clipped to the canvas, which must be a contiguous uint8 [H, W, 3] tensor (edited in place).
// Only pixels inside [x, x + text_width) x [y, y + text_height) can change.
void draw_text(const torch::Tensor& canvas, int64_t x, int64_t y, const std::string& text, Rgb rgb,
               int64_t scale = 1);
int64_t text_width(const std::string& text, int64_t scale = 1);   // widest line
int64_t text_height(const std::string& text, int64_t scale = 1);  // all lines
// The 7 rows of a glyph, bit 4 = leftmost column (for tests and other renderers).
std::array<uint8_t, 7> glyph_rows(char c);

// One row per class: a swatch of its palette colour and "id name"; plus "255 ignore" when
// include_ignore. uint8 [H, W, 3].
torch::Tensor legend(const std::vector<std::string>& class_names, int64_t scale = 1,
                     bool include_ignore = true);

// The first `count` samples in a grid of `cols` columns (12-pixel gaps), enlarged x3:
// segmentation scenes as image | label overlay pairs (2-pixel gap) with a class legend (scale
// 2) below; classification samples with their class name under them. Writes a PNG (DataError
// when it cannot be written).
void write_scene_grid(const std::string& png_path, const TensorDataset& dataset, int64_t count,
                      int64_t cols);

}  // namespace distillery

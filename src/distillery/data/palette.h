// The fixed colour palette for label maps: 0 (background) dark, 1..10 (the fashion classes)
// clearly distinct, 11..254 generated, 255 (ignore) white.
#pragma once
#include <torch/types.h>

#include <array>
#include <cstdint>
#include <vector>

namespace distillery {

using Rgb = std::array<uint8_t, 3>;

const std::array<Rgb, 256>& label_palette();
// The same entries as a list, e.g. for write_png_palette.
std::vector<Rgb> label_palette_list();

// labels: integer [H, W] -> uint8 [H, W, 3]. Values outside 0..255 are shown as 255 (ignore).
torch::Tensor colorize(const torch::Tensor& labels);

}  // namespace distillery

// PNG files through libpng: pictures of data, predictions and training curves, and the label
// maps of real segmentation datasets (palette PNGs whose indices are the class ids).
#pragma once
#include <torch/types.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace distillery {

// image: uint8 [H, W], [H, W, 1], [H, W, 3] or [H, W, 4]. Written to a temporary file in the
// same directory and renamed, so a reader never sees half a file. DataError on failure.
void write_png(const std::string& path, const torch::Tensor& image);

// indices: uint8 [H, W]; palette: up to 256 RGB entries, every index must have one.
void write_png_palette(const std::string& path, const torch::Tensor& indices,
                       const std::vector<std::array<uint8_t, 3>>& palette);

// uint8 [H, W, C] with C = 1 (grey), 3 (RGB) or 4 (RGBA), as stored; 16-bit samples are
// reduced to 8, palette images expanded to RGB (RGBA with transparency), grey+alpha to RGBA.
// DataError naming the file when it is missing or not a valid PNG.
torch::Tensor read_png(const std::string& path);

// The raw indices uint8 [H, W] of a palette PNG (e.g. Pascal VOC label maps); DataError when
// the file is not a palette PNG.
torch::Tensor read_png_indices(const std::string& path);

// A label map uint8 [H, W]: the indices of a palette PNG or the values of an 8-bit greyscale
// one. DataError for colour, 16-bit or invalid files.
torch::Tensor read_png_labels(const std::string& path);

}  // namespace distillery

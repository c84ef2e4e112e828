// Photographs of real datasets: PNG through libpng (core/png.h), JPEG through the header-only
// stb_image (Debian libstb-dev), told apart by their leading bytes rather than the extension.
#pragma once
#include <torch/types.h>

#include <string>

namespace distillery {

// uint8 [H, W, 3] RGB: greyscale is replicated, alpha dropped. DataError naming the file when
// it is missing, neither PNG nor JPEG, or cannot be decoded.
torch::Tensor read_rgb_image(const std::string& path);

// image: uint8 [H, W, 3] or [H, W]; quality 1..100. Written atomically. DataError on failure.
void write_jpeg(const std::string& path, const torch::Tensor& image, int quality = 95);

}  // namespace distillery

#include "distillery/core/image_io.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "distillery/core/error.h"
#include "distillery/core/png.h"

// The decoder and encoder are compiled into this file only, with internal linkage, and limited
// to the formats used here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_JPEG
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#include "stb_image.h"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#define STBI_WRITE_NO_STDIO
#include "stb_image_write.h"
#pragma GCC diagnostic pop

namespace distillery {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw DataError(fmt::format("image '{}': {}", path, problem));
}

void append_bytes(void* context, void* data, int size) {
  auto* out = static_cast<std::vector<unsigned char>*>(context);
  out->insert(out->end(), static_cast<unsigned char*>(data), static_cast<unsigned char*>(data) + size);
}

}  // namespace

torch::Tensor read_rgb_image(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot be opened (missing or unreadable)");
  unsigned char magic[4] = {0, 0, 0, 0};
  in.read(reinterpret_cast<char*>(magic), 4);
  const bool png = magic[0] == 0x89 && magic[1] == 'P' && magic[2] == 'N' && magic[3] == 'G';
  const bool jpeg = magic[0] == 0xFF && magic[1] == 0xD8 && magic[2] == 0xFF;
  if (png) {
    in.close();
    torch::Tensor image = read_png(path);  // [H, W, 1|3|4]
    const int64_t channels = image.size(2);
    if (channels == 1) return image.expand({image.size(0), image.size(1), 3}).contiguous();
    if (channels == 4) return image.narrow(2, 0, 3).contiguous();
    return image;
  }
  if (!jpeg) fail(path, "neither a PNG nor a JPEG file");
  in.seekg(0);
  std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() > static_cast<size_t>(INT32_MAX)) fail(path, "file too large");
  int width = 0, height = 0, stored_channels = 0;
  unsigned char* pixels = stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &width,
                                                &height, &stored_channels, 3);
  if (!pixels) fail(path, fmt::format("JPEG cannot be decoded ({})", stbi_failure_reason()));
  torch::Tensor image = torch::empty({height, width, 3}, torch::kUInt8);
  std::memcpy(image.data_ptr<uint8_t>(), pixels, static_cast<size_t>(height) * width * 3);
  stbi_image_free(pixels);
  return image;
}

void write_jpeg(const std::string& path, const torch::Tensor& image, int quality) {
  if (image.scalar_type() != torch::kUInt8 || !(image.dim() == 2 || (image.dim() == 3 && image.size(2) == 3)))
    fail(path, "expected a uint8 image [H, W] or [H, W, 3]");
  if (quality < 1 || quality > 100) fail(path, fmt::format("JPEG quality {} is not in 1..100", quality));
  torch::Tensor data = image.contiguous();
  const int height = static_cast<int>(data.size(0)), width = static_cast<int>(data.size(1));
  const int channels = data.dim() == 2 ? 1 : 3;
  std::vector<unsigned char> bytes;
  if (!stbi_write_jpg_to_func(append_bytes, &bytes, width, height, channels, data.data_ptr<uint8_t>(), quality))
    fail(path, "JPEG encoding failed");
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!out) fail(path, "cannot be written");
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    std::remove(temporary.c_str());
    fail(path, "cannot be renamed into place");
  }
}

}  // namespace distillery

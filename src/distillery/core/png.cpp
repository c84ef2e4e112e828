#include "distillery/core/png.h"

#include <fmt/format.h>
#include <png.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "distillery/core/error.h"

// libpng reports errors by longjmp. Everything a jump could skip lives in a state object owned
// by the caller (outside the setjmp frame), so nothing leaks and no destructor is bypassed;
// the functions that call setjmp hold only trivially destructible locals.

namespace distillery {
namespace {

struct PngState {
  std::string path;
  std::FILE* file = nullptr;
  png_structp png = nullptr;
  png_infop info = nullptr;
  bool writing = false;
  char message[256] = {0};
  // Decoded or to-be-encoded pixels, owned here so that a longjmp cannot leak them.
  std::vector<uint8_t> pixels;
  std::vector<png_bytep> rows;
  std::vector<png_color> palette;
  int64_t height = 0, width = 0, channels = 0;

  ~PngState() {
    if (png) {
      if (writing)
        png_destroy_write_struct(&png, info ? &info : nullptr);
      else
        png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    }
    if (file) std::fclose(file);
  }
};

void on_error(png_structp png, png_const_charp message) {
  auto* state = static_cast<PngState*>(png_get_error_ptr(png));
  std::snprintf(state->message, sizeof(state->message), "%s", message ? message : "libpng error");
  png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {}

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw DataError(fmt::format("PNG file '{}': {}", path, problem));
}

void open_for_reading(PngState& state) {
  state.file = std::fopen(state.path.c_str(), "rb");
  if (!state.file) fail(state.path, "cannot be opened (missing or unreadable)");
  unsigned char signature[8];
  if (std::fread(signature, 1, 8, state.file) != 8 || png_sig_cmp(signature, 0, 8) != 0)
    fail(state.path, "not a PNG file");
  state.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, on_error, on_warning);
  if (!state.png) fail(state.path, "out of memory");
  state.info = png_create_info_struct(state.png);
  if (!state.info) fail(state.path, "out of memory");
}

enum class Decode { Pixels, Indices, Labels };

// Returns false after a libpng error (message in state.message).
bool decode(PngState* state, Decode mode) {
  if (setjmp(png_jmpbuf(state->png))) return false;
  png_init_io(state->png, state->file);
  png_set_sig_bytes(state->png, 8);
  png_read_info(state->png, state->info);
  png_uint_32 width = png_get_image_width(state->png, state->info);
  png_uint_32 height = png_get_image_height(state->png, state->info);
  int color_type = png_get_color_type(state->png, state->info);
  int bit_depth = png_get_bit_depth(state->png, state->info);
  if (mode == Decode::Labels) {
    // Class ids: palette indices (VOC) or grey values (Cityscapes, ADE20K), never colours.
    if (color_type != PNG_COLOR_TYPE_PALETTE && color_type != PNG_COLOR_TYPE_GRAY) {
      std::snprintf(state->message, sizeof(state->message),
                    "a label map must be a palette or 8-bit greyscale PNG (colour type %d)", color_type);
      return false;
    }
    if (bit_depth == 16) {
      std::snprintf(state->message, sizeof(state->message), "16-bit label maps are not supported");
      return false;
    }
    if (bit_depth < 8) {
      if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_packing(state->png);
      else png_set_expand_gray_1_2_4_to_8(state->png);
    }
  } else if (mode == Decode::Indices) {
    if (color_type != PNG_COLOR_TYPE_PALETTE) {
      std::snprintf(state->message, sizeof(state->message), "not a palette PNG (colour type %d)",
                    color_type);
      return false;
    }
    if (bit_depth < 8) png_set_packing(state->png);
  } else {
    if (bit_depth == 16) png_set_strip_16(state->png);
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(state->png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(state->png);
    if (png_get_valid(state->png, state->info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(state->png);
    bool has_alpha = (color_type & PNG_COLOR_MASK_ALPHA) ||
                     png_get_valid(state->png, state->info, PNG_INFO_tRNS);
    if (!(color_type & PNG_COLOR_MASK_COLOR) && has_alpha) png_set_gray_to_rgb(state->png);
  }
  png_set_interlace_handling(state->png);
  png_read_update_info(state->png, state->info);
  int channels = png_get_channels(state->png, state->info);
  if (png_get_rowbytes(state->png, state->info) != size_t(width) * channels) {
    std::snprintf(state->message, sizeof(state->message), "unsupported pixel layout");
    return false;
  }
  state->height = height, state->width = width, state->channels = channels;
  state->pixels.resize(size_t(height) * width * channels);
  state->rows.resize(height);
  for (png_uint_32 y = 0; y < height; ++y) state->rows[y] = &state->pixels[size_t(y) * width * channels];
  png_read_image(state->png, state->rows.data());
  png_read_end(state->png, nullptr);
  return true;
}

torch::Tensor read(const std::string& path, Decode mode) {
  PngState state;
  state.path = path;
  open_for_reading(state);
  if (!decode(&state, mode)) fail(path, state.message);
  torch::Tensor out = torch::empty({state.height, state.width, state.channels}, torch::kUInt8);
  std::memcpy(out.data_ptr<uint8_t>(), state.pixels.data(), state.pixels.size());
  return mode == Decode::Pixels ? out : out.squeeze(2);
}

bool encode(PngState* state, int color_type) {
  if (setjmp(png_jmpbuf(state->png))) return false;
  png_init_io(state->png, state->file);
  png_set_IHDR(state->png, state->info, static_cast<png_uint_32>(state->width),
               static_cast<png_uint_32>(state->height), 8, color_type, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (!state->palette.empty())
    png_set_PLTE(state->png, state->info, state->palette.data(), static_cast<int>(state->palette.size()));
  png_write_info(state->png, state->info);
  png_write_image(state->png, state->rows.data());
  png_write_end(state->png, nullptr);
  return true;
}

void write(const std::string& path, const torch::Tensor& pixels, int64_t channels, int color_type,
           const std::vector<std::array<uint8_t, 3>>* palette) {
  torch::Tensor data = pixels.contiguous();
  PngState state;
  state.path = path;
  state.writing = true;
  state.height = data.size(0), state.width = data.size(1), state.channels = channels;
  if (state.height < 1 || state.width < 1 || state.height > (1 << 20) || state.width > (1 << 20))
    fail(path, fmt::format("cannot write an image of {}x{}", state.height, state.width));
  if (palette)
    for (const auto& entry : *palette) state.palette.push_back(png_color{entry[0], entry[1], entry[2]});
  uint8_t* base = data.data_ptr<uint8_t>();
  state.rows.resize(static_cast<size_t>(state.height));
  for (int64_t y = 0; y < state.height; ++y) state.rows[y] = base + y * state.width * channels;

  std::string temp = fmt::format("{}.tmp{}", path, static_cast<long>(::getpid()));
  state.file = std::fopen(temp.c_str(), "wb");
  if (!state.file) fail(path, "cannot be created");
  state.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &state, on_error, on_warning);
  if (state.png) state.info = png_create_info_struct(state.png);
  bool ok = state.png && state.info && encode(&state, color_type);
  int close_status = std::fclose(state.file);
  state.file = nullptr;
  if (!ok || close_status != 0) {
    std::remove(temp.c_str());
    fail(path, ok ? "write failed" : state.message);
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    std::remove(temp.c_str());
    fail(path, "cannot be renamed into place");
  }
}

}  // namespace

void write_png(const std::string& path, const torch::Tensor& image) {
  if (image.scalar_type() != torch::kUInt8 || (image.dim() != 2 && image.dim() != 3))
    fail(path, "expected a uint8 image [H, W] or [H, W, C]");
  torch::Tensor pixels = image.dim() == 2 ? image.unsqueeze(2) : image;
  int64_t channels = pixels.size(2);
  int color_type = channels == 1   ? PNG_COLOR_TYPE_GRAY
                   : channels == 3 ? PNG_COLOR_TYPE_RGB
                   : channels == 4 ? PNG_COLOR_TYPE_RGB_ALPHA
                                   : -1;
  if (color_type < 0) fail(path, fmt::format("cannot write an image with {} channels", channels));
  write(path, pixels, channels, color_type, nullptr);
}

void write_png_palette(const std::string& path, const torch::Tensor& indices,
                       const std::vector<std::array<uint8_t, 3>>& palette) {
  if (indices.scalar_type() != torch::kUInt8 || indices.dim() != 2)
    fail(path, "expected uint8 palette indices [H, W]");
  if (palette.empty() || palette.size() > 256) fail(path, "a palette needs 1 to 256 entries");
  if (indices.numel() > 0 && indices.max().item<int64_t>() >= static_cast<int64_t>(palette.size()))
    fail(path, "an index has no palette entry");
  write(path, indices, 1, PNG_COLOR_TYPE_PALETTE, &palette);
}

torch::Tensor read_png(const std::string& path) { return read(path, Decode::Pixels); }

torch::Tensor read_png_indices(const std::string& path) { return read(path, Decode::Indices); }

torch::Tensor read_png_labels(const std::string& path) { return read(path, Decode::Labels); }

}  // namespace distillery

// Fuzzes the PNG reader (libpng behind our error handling and size limits), both as an image
// and as palette indices.
#include <string>

#include "distillery/core/error.h"
#include "distillery/core/png.h"
#include "fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = distillery::fuzz::input_path(".png");
  distillery::fuzz::write_input(path, data, size);
  for (bool indices : {false, true}) {
    try {
      torch::Tensor image = indices ? distillery::read_png_indices(path) : distillery::read_png(path);
      if (image.numel() == 0) __builtin_trap();  // a decoded image has pixels
    } catch (const distillery::DataError&) {
    }
  }
  return 0;
}

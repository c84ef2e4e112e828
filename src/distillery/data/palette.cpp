#include "distillery/data/palette.h"

#include <torch/torch.h>

namespace distillery {
namespace {

std::array<Rgb, 256> build_palette() {
  std::array<Rgb, 256> palette{};
  // Distinct colours (after Sasha Trubetskoy's list) for the first 19 classes.
  const Rgb distinct[] = {{230, 25, 75},   {60, 180, 75},   {255, 225, 25},  {0, 130, 200},
                          {245, 130, 48},  {145, 30, 180},  {70, 240, 240},  {240, 50, 230},
                          {210, 245, 60},  {250, 190, 212}, {0, 128, 128},   {220, 190, 255},
                          {170, 110, 40},  {255, 250, 200}, {128, 0, 0},     {170, 255, 195},
                          {128, 128, 0},   {255, 215, 180}, {0, 0, 128}};
  palette[0] = {24, 24, 28};
  const int distinct_count = static_cast<int>(sizeof(distinct) / sizeof(distinct[0]));
  for (int i = 1; i < 255; ++i) {
    if (i <= distinct_count) {
      palette[i] = distinct[i - 1];
      continue;
    }
    // The Pascal VOC bit-interleaving scheme for the rest.
    int r = 0, g = 0, b = 0, id = i;
    for (int shift = 7; shift >= 0; --shift, id >>= 3) {
      r |= ((id >> 0) & 1) << shift;
      g |= ((id >> 1) & 1) << shift;
      b |= ((id >> 2) & 1) << shift;
    }
    palette[i] = {uint8_t(r), uint8_t(g), uint8_t(b)};
  }
  palette[255] = {255, 255, 255};
  return palette;
}

}  // namespace

const std::array<Rgb, 256>& label_palette() {
  static const std::array<Rgb, 256> palette = build_palette();
  return palette;
}

std::vector<Rgb> label_palette_list() {
  const auto& palette = label_palette();
  return std::vector<Rgb>(palette.begin(), palette.end());
}

torch::Tensor colorize(const torch::Tensor& labels) {
  TORCH_CHECK(labels.dim() == 2, "colorize expects labels [H, W]");
  torch::Tensor ids = labels.to(torch::kLong).contiguous();
  ids = torch::where((ids < 0) | (ids > 255), torch::full_like(ids, 255), ids);
  // std::array<Rgb, 256> is 768 contiguous bytes.
  static_assert(sizeof(std::array<Rgb, 256>) == 256 * 3, "palette must be packed");
  torch::Tensor table = torch::from_blob(const_cast<Rgb*>(label_palette().data()), {256, 3},
                                         torch::kUInt8);
  return table.index_select(0, ids.flatten()).view({labels.size(0), labels.size(1), 3});
}

}  // namespace distillery

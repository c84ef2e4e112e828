#include "distillery/data/scale_crop.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "distillery/data/batch.h"

namespace distillery {

namespace F = torch::nn::functional;

torch::Tensor resize_image(const torch::Tensor& image, int64_t height, int64_t width) {
  if (image.size(1) == height && image.size(2) == width) return image;
  auto options = F::InterpolateFuncOptions()
                     .size(std::vector<int64_t>{height, width})
                     .mode(torch::kBilinear)
                     .align_corners(false);
  return F::interpolate(image.unsqueeze(0).to(torch::kFloat), options)
      .squeeze(0)
      .round_()
      .clamp_(0, 255)
      .to(torch::kUInt8);
}

torch::Tensor resize_labels(const torch::Tensor& labels, int64_t height, int64_t width) {
  if (labels.size(0) == height && labels.size(1) == width) return labels;
  auto options = F::InterpolateFuncOptions()
                     .size(std::vector<int64_t>{height, width})
                     .mode(torch::kNearest);
  return F::interpolate(labels.unsqueeze(0).unsqueeze(0).to(torch::kFloat), options)
      .squeeze(0)
      .squeeze(0)
      .to(torch::kUInt8);
}

std::pair<torch::Tensor, torch::Tensor> random_scale_crop(const torch::Tensor& image,
                                                          const torch::Tensor& labels, double resize,
                                                          int64_t crop, const AugmentOptions& augment,
                                                          Rng& rng) {
  TORCH_CHECK(image.dim() == 3 && labels.dim() == 2 && image.size(1) == labels.size(0) &&
                  image.size(2) == labels.size(1),
              "random_scale_crop: image [C, H, W] and labels [H, W] must match");
  TORCH_CHECK(crop > 0 && resize > 0, "random_scale_crop: crop and resize must be positive");
  const bool random = augment.enabled;
  const bool flip = rng.uniform() < 0.5 && random && augment.flip;
  const double scale = resize * (random ? rng.uniform(augment.min_scale, augment.max_scale) : 1.0);
  const int64_t height = std::max<int64_t>(1, std::llround(image.size(1) * scale));
  const int64_t width = std::max<int64_t>(1, std::llround(image.size(2) * scale));
  torch::Tensor scaled_image = resize_image(image, height, width);
  torch::Tensor scaled_labels = resize_labels(labels, height, width);

  // Pad (bottom / right) to at least the crop, then pick the window.
  const int64_t padded_h = std::max(height, crop), padded_w = std::max(width, crop);
  if (padded_h != height || padded_w != width) {
    torch::Tensor image_canvas = torch::full({image.size(0), padded_h, padded_w}, kAugmentPadValue, torch::kUInt8);
    torch::Tensor label_canvas = torch::full({padded_h, padded_w}, kIgnoreLabel, torch::kUInt8);
    image_canvas.narrow(1, 0, height).narrow(2, 0, width).copy_(scaled_image);
    label_canvas.narrow(0, 0, height).narrow(1, 0, width).copy_(scaled_labels);
    scaled_image = image_canvas;
    scaled_labels = label_canvas;
  }
  const int64_t top = random ? rng.integer(0, padded_h - crop) : (padded_h - crop) / 2;
  const int64_t left = random ? rng.integer(0, padded_w - crop) : (padded_w - crop) / 2;
  torch::Tensor image_out = scaled_image.narrow(1, top, crop).narrow(2, left, crop);
  torch::Tensor labels_out = scaled_labels.narrow(0, top, crop).narrow(1, left, crop);
  if (flip) {
    image_out = image_out.flip({2});
    labels_out = labels_out.flip({1});
  }
  return {image_out.contiguous(), labels_out.contiguous()};
}

}  // namespace distillery

// Training crops of full-size photographs (on-disk datasets): rescale by resize * s with s drawn
// from [min_scale, max_scale] (image bilinear, labels nearest), pad up to the crop size (image
// with kAugmentPadValue, labels with 255 = ignore), cut a random crop x crop window, and flip it
// horizontally with probability 1/2. With augmentation disabled: rescale by `resize` only and
// cut the centre window. The draws come from `rng` alone, in a fixed order (flip, scale,
// offsets), so a sample's crop depends only on its seed.
#pragma once
#include <torch/types.h>

#include <utility>

#include "distillery/data/augment.h"

namespace distillery {

// image uint8 [C, H, W], labels uint8 [H, W] -> uint8 [C, crop, crop], uint8 [crop, crop].
std::pair<torch::Tensor, torch::Tensor> random_scale_crop(const torch::Tensor& image,
                                                          const torch::Tensor& labels, double resize,
                                                          int64_t crop, const AugmentOptions& augment,
                                                          Rng& rng);

// Bilinear (image, uint8 [C, H, W]) and nearest (labels, uint8 [H, W]) resizing; size {H', W'}.
torch::Tensor resize_image(const torch::Tensor& image, int64_t height, int64_t width);
torch::Tensor resize_labels(const torch::Tensor& labels, int64_t height, int64_t width);

}  // namespace distillery

#include "distillery/train/inference.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "distillery/data/loader.h"
#include "distillery/data/scale_crop.h"
#include "distillery/train/task_loss.h"

namespace distillery {
namespace {

// Window starts along one axis: every `stride`, the last one flush with the end.
std::vector<int64_t> window_starts(int64_t size, int64_t crop, int64_t stride) {
  std::vector<int64_t> starts;
  if (size <= crop) return {0};
  for (int64_t s = 0;; s += stride) {
    if (s + crop >= size) {
      starts.push_back(size - crop);
      break;
    }
    starts.push_back(s);
  }
  return starts;
}

}  // namespace

torch::Tensor infer_logits(ModelImpl& model, const torch::Tensor& input, const InferenceOptions& options) {
  torch::NoGradGuard no_grad;
  const int64_t height = input.size(2), width = input.size(3);
  if (options.mode != "slide") return upsample_logits(model.forward(input).logits, {height, width});
  const int64_t crop = options.crop;
  torch::Tensor padded = input;
  const int64_t padded_h = std::max(height, crop), padded_w = std::max(width, crop);
  if (padded_h != height || padded_w != width)
    padded = torch::constant_pad_nd(input, {0, padded_w - width, 0, padded_h - height}, 0.0);
  torch::Tensor sum, count = torch::zeros({1, 1, padded_h, padded_w});
  for (int64_t top : window_starts(padded_h, crop, options.stride))
    for (int64_t left : window_starts(padded_w, crop, options.stride)) {
      torch::Tensor window = padded.narrow(2, top, crop).narrow(3, left, crop);
      torch::Tensor logits = upsample_logits(model.forward(window).logits, {crop, crop});
      if (!sum.defined()) sum = torch::zeros({1, logits.size(1), padded_h, padded_w});
      sum.narrow(2, top, crop).narrow(3, left, crop).add_(logits);
      count.narrow(2, top, crop).narrow(3, left, crop).add_(1.0);
    }
  return (sum / count).narrow(2, 0, height).narrow(3, 0, width);
}

torch::Tensor predict_label_map(ModelImpl& model, const torch::Tensor& image, double resize,
                                const InferenceOptions& options, int64_t out_height, int64_t out_width) {
  const int64_t height = std::max<int64_t>(1, std::llround(image.size(1) * resize));
  const int64_t width = std::max<int64_t>(1, std::llround(image.size(2) * resize));
  torch::Tensor input = to_model_input(resize_image(image, height, width).unsqueeze(0));
  torch::Tensor logits = infer_logits(model, input, options);
  return upsample_logits(logits, {out_height, out_width}).argmax(1).squeeze(0);
}

}  // namespace distillery

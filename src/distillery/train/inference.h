// Full-resolution inference on photographs of any size: one forward pass over the whole image,
// or overlapping crop x crop windows whose upsampled logits are averaged (as mmsegmentation's
// slide mode) - the choice for models trained on crops much smaller than the images.
#pragma once
#include <torch/types.h>

#include "distillery/data/file_dataset.h"
#include "distillery/models/model.h"

namespace distillery {

// input: normalised float [1, C, H, W] -> logits [1, K, H, W]. No gradients; the caller sets
// eval mode. Slide: windows start every `stride` pixels and the last one is aligned with the
// border; an image smaller than the window is padded with 0 (the normalised mid-grey) and the
// padding cropped away again.
torch::Tensor infer_logits(ModelImpl& model, const torch::Tensor& input, const InferenceOptions& options);

// image: uint8 [C, H, W] photograph. Rescales it by `resize`, infers, brings the logits to
// out_height x out_width and returns the class per pixel, int64 [out_height, out_width].
torch::Tensor predict_label_map(ModelImpl& model, const torch::Tensor& image, double resize,
                                const InferenceOptions& options, int64_t out_height, int64_t out_width);

}  // namespace distillery

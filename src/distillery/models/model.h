// The model contract: every network returns its logits and its stage features explicitly
// (LibTorch modules have no forward hooks), and describes its stages so that distillers can
// build projectors before the first forward pass.
#pragma once
#include <torch/nn/module.h>
#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

namespace distillery {

struct StageSpec {
  int64_t channels = 0;
  int64_t stride = 1;  // input size / feature size
};

struct ModelOutput {
  torch::Tensor logits;                 // segmentation: [B, C, H/s, W/s]; classification: [B, C]
  std::vector<torch::Tensor> features;  // per stage, shallow to deep, always NCHW
  torch::Tensor aux_logits;             // optional auxiliary head (undefined when absent)
  torch::Tensor embedding;              // optional pooled embedding [B, D] (classification)
};

enum class Task { Segmentation, Classification };

class ModelImpl : public torch::nn::Module {
 public:
  virtual ModelOutput forward(const torch::Tensor& images) = 0;
  virtual std::vector<StageSpec> stages() const = 0;
  virtual int64_t num_classes() const = 0;
  // Stride of the logits relative to the input (segmentation); 0 for classification.
  virtual int64_t output_stride() const = 0;
  virtual Task task() const { return Task::Segmentation; }
};
using Model = std::shared_ptr<ModelImpl>;

// What a zoo entry is built from; every field can be set from a recipe's `model:` block.
struct ModelOptions {
  int64_t num_classes = 11;
  int64_t in_channels = 1;
  int64_t input_size = 64;   // used to size ASPP rates and position embeddings
  bool aux_head = false;     // FCN auxiliary head where the model supports one
  double width = 0;          // 0: the preset's own width multiplier
  double drop_path = 0.0;    // stochastic depth (Transformers)
  double head_dropout = -1;  // dropout after the ASPP projection (DeepLabV3); < 0: the preset's
};

}  // namespace distillery

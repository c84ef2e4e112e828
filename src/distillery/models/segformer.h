// SegFormer (Xie et al., NeurIPS 2021): the MiT encoder + the all-MLP decode head. Logits at
// stride 4 of the input.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/types.h>

#include <vector>

#include "distillery/models/mit.h"
#include "distillery/models/batch_norm.h"
#include "distillery/models/model.h"

namespace distillery {

// Per-stage Linear to a common width, bilinear upsampling of all to the first stage's size,
// concatenation, 1x1 conv + BN + ReLU fuse, dropout, 1x1 classifier.
class SegFormerHeadImpl : public torch::nn::Module {
 public:
  SegFormerHeadImpl(const std::vector<int64_t>& in_channels, int64_t embed_dim,
                    int64_t num_classes, double dropout = 0.1);
  // features: shallow to deep NCHW maps; logits at the first map's size.
  torch::Tensor forward(const std::vector<torch::Tensor>& features);

  std::vector<torch::nn::Linear> stage_linears;
  torch::nn::Conv2d fuse{nullptr};
  BatchNorm2d fuse_norm{nullptr};
  torch::nn::Dropout2d dropout{nullptr};
  torch::nn::Conv2d classifier{nullptr};
};
TORCH_MODULE(SegFormerHead);

class SegFormerImpl : public ModelImpl {
 public:
  SegFormerImpl(const MiTOptions& encoder, int64_t decode_dim, int64_t num_classes,
                double dropout = 0.1);
  ModelOutput forward(const torch::Tensor& images) override;
  std::vector<StageSpec> stages() const override { return encoder->stages(); }
  int64_t num_classes() const override { return num_classes_; }
  int64_t output_stride() const override { return encoder->stages().front().stride; }

  MiTEncoder encoder{nullptr};
  SegFormerHead head{nullptr};

 private:
  int64_t num_classes_;
};
TORCH_MODULE(SegFormer);

}  // namespace distillery

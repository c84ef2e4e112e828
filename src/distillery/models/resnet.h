// ResNet backbones (BasicBlock / Bottleneck, torchvision layout "v1.5": stride on the 3x3 conv)
// returning their four stage features. Also the CNN backbone interface that the segmentation
// and classification wrappers are built on.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/types.h>

#include <memory>
#include <vector>

#include "distillery/models/batch_norm.h"
#include "distillery/models/model.h"

namespace distillery {

// A CNN feature extractor: four stage features, shallow to deep, described by stages().
class CnnBackboneImpl : public torch::nn::Module {
 public:
  virtual std::vector<torch::Tensor> forward(const torch::Tensor& images) = 0;
  virtual std::vector<StageSpec> stages() const = 0;
};
using CnnBackbone = std::shared_ptr<CnnBackboneImpl>;

// The first layers. torchvision's ImageNet stem is 7x7 stride 2 + 3x3 max-pool stride 2
// (stride 4 before the first stage); small inputs want a 3x3 conv with stride 1 or 2 and no pool.
struct ResNetStemOptions {
  int64_t kernel_size = 7;
  int64_t stride = 2;
  bool max_pool = true;
  int64_t total_stride() const { return stride * (max_pool ? 2 : 1); }
};

enum class ResNetBlockType { Basic, Bottleneck };

struct ResNetOptions {
  ResNetBlockType block = ResNetBlockType::Basic;
  std::vector<int64_t> layers = {2, 2, 2, 2};  // blocks per stage
  int64_t base_width = 64;                     // stage planes w, 2w, 4w, 8w (times expansion)
  int64_t in_channels = 3;
  // Stride of the last stage. Smaller values replace the stride of the deepest stages by
  // dilation (torchvision's replace_stride_with_dilation): must be stem stride * 2^k, k in 0..3.
  int64_t output_stride = 32;
  ResNetStemOptions stem;

  // Depth 18/34 (BasicBlock) or 50/101 (Bottleneck); throws ConfigError for other depths.
  static ResNetOptions for_depth(int64_t depth);
  int64_t expansion() const { return block == ResNetBlockType::Basic ? 1 : 4; }
};

// Two 3x3 convolutions with an identity (or 1x1 projection) shortcut.
class BasicBlockImpl : public torch::nn::Module {
 public:
  // first_dilation: dilation of the first conv (the previous stage's, as torchvision does for
  // the first block of a newly dilated stage); dilation: the second conv's.
  BasicBlockImpl(int64_t in_channels, int64_t planes, int64_t stride, int64_t first_dilation,
                 int64_t dilation);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  BatchNorm2d bn1_{nullptr}, bn2_{nullptr};
  torch::nn::Sequential downsample_{nullptr};
};
TORCH_MODULE(BasicBlock);

// 1x1 reduce, 3x3 (strided / dilated), 1x1 expand by 4, with a shortcut.
class BottleneckImpl : public torch::nn::Module {
 public:
  BottleneckImpl(int64_t in_channels, int64_t planes, int64_t stride, int64_t dilation);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr};
  BatchNorm2d bn1_{nullptr}, bn2_{nullptr}, bn3_{nullptr};
  torch::nn::Sequential downsample_{nullptr};
};
TORCH_MODULE(Bottleneck);

class ResNetImpl : public CnnBackboneImpl {
 public:
  explicit ResNetImpl(const ResNetOptions& options);
  // Features after layer1..layer4.
  std::vector<torch::Tensor> forward(const torch::Tensor& images) override;
  std::vector<StageSpec> stages() const override { return stages_; }
  const ResNetOptions& options() const { return options_; }

 private:
  ResNetOptions options_;
  torch::nn::Sequential stem_{nullptr};
  std::vector<torch::nn::Sequential> layers_;
  std::vector<StageSpec> stages_;
};
TORCH_MODULE(ResNet);

}  // namespace distillery

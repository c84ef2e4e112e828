// Learnable maps between feature spaces: the 1x1 conv aligner (FitNet's regressor, CWD's
// feature aligner) and the conv-BN-ReLU projector (OFA branches, HeteroAKD projectors).
#pragma once
#include <torch/nn/modules/container/sequential.h>

#include <string>

#include "distillery/core/config.h"

namespace distillery {

enum class ProjectorKind {
  Linear,      // 1x1 conv with bias: a per-pixel linear map
  ConvBnRelu,  // 3x3 conv (in -> in, no bias) + BN + ReLU, then the 1x1 conv
};

// Reads `key` as "linear" or "conv_bn_relu".
ProjectorKind read_projector_kind(const ConfigSection& cfg, const std::string& key,
                                  const std::string& fallback);

// Parameters: Linear in*out + out; ConvBnRelu adds 9*in*in + 2*in (BN affine).
torch::nn::Sequential make_projector(int64_t in_channels, int64_t out_channels, ProjectorKind kind);

// 1x1 conv aligner in -> out channels (same as make_projector(..., Linear)).
torch::nn::Sequential make_aligner(int64_t in_channels, int64_t out_channels);

}  // namespace distillery

#include "distillery/models/drop_path.h"

#include <torch/torch.h>

#include "distillery/core/error.h"

namespace distillery {

torch::Tensor drop_path(const torch::Tensor& x, double p, bool training) {
  if (!training || p <= 0.0) return x;
  const double keep = 1.0 - p;
  // One Bernoulli draw per sample, broadcast over every other dimension.
  std::vector<int64_t> mask_shape(static_cast<size_t>(x.dim()), 1);
  mask_shape[0] = x.size(0);
  auto mask = torch::empty(mask_shape, x.options()).bernoulli_(keep);
  return x * mask / keep;
}

DropPathImpl::DropPathImpl(double p) : p_(p) {
  if (p < 0.0 || p >= 1.0)
    throw ConfigError("drop_path rate must be in [0, 1), got " + std::to_string(p));
}

torch::Tensor DropPathImpl::forward(const torch::Tensor& x) { return drop_path(x, p_, is_training()); }

}  // namespace distillery

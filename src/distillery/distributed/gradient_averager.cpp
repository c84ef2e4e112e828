#include "distillery/distributed/gradient_averager.h"

#include <torch/torch.h>

#include "distillery/distributed/process_group.h"

namespace distillery {

GradientAverager::GradientAverager(std::vector<torch::Tensor> parameters, int64_t bucket_bytes)
    : parameters_(std::move(parameters)) {
  TORCH_CHECK(bucket_bytes > 0, "GradientAverager: bucket size must be positive");
  // Consecutive parameters of one dtype share a bucket until it is full; a larger parameter
  // gets a bucket of its own.
  Bucket current;
  int64_t current_bytes = 0;
  c10::ScalarType current_type = torch::kFloat;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const auto& p = parameters_[i];
    const int64_t bytes = p.numel() * static_cast<int64_t>(p.element_size());
    bool fits = current.members.empty() ||
                (p.scalar_type() == current_type && current_bytes + bytes <= bucket_bytes);
    if (!fits) {
      buckets_.push_back(std::move(current));
      current = Bucket();
      current_bytes = 0;
    }
    current.members.push_back(i);
    current.numel += p.numel();
    current_bytes += bytes;
    current_type = p.scalar_type();
  }
  if (!current.members.empty()) buckets_.push_back(std::move(current));
}

void GradientAverager::average(ProcessGroup& group) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> flats;
  for (const auto& bucket : buckets_) {
    const auto& first = parameters_[bucket.members.front()];
    auto flat = torch::zeros({bucket.numel + static_cast<int64_t>(bucket.members.size())},
                             first.options().requires_grad(false));
    int64_t offset = 0;
    for (size_t k = 0; k < bucket.members.size(); ++k) {
      const auto& p = parameters_[bucket.members[k]];
      if (p.grad().defined()) {
        flat.slice(0, offset, offset + p.numel()).copy_(p.grad().reshape(-1));
        flat[bucket.numel + static_cast<int64_t>(k)] = 1;
      }
      offset += p.numel();
    }
    flats.push_back(flat);
  }
  group.all_reduce_sum(flats);
  const double ranks = group.world_size();
  for (size_t b = 0; b < buckets_.size(); ++b) {
    const auto& bucket = buckets_[b];
    auto flags = flats[b].slice(0, bucket.numel);
    auto gradients = flats[b].slice(0, 0, bucket.numel).div_(ranks);
    auto has_gradient = flags.gt(0.5).to(torch::kBool);
    auto flag = has_gradient.accessor<bool, 1>();
    int64_t offset = 0;
    for (size_t k = 0; k < bucket.members.size(); ++k) {
      auto& p = parameters_[bucket.members[k]];
      auto mean = gradients.slice(0, offset, offset + p.numel()).view(p.sizes());
      offset += p.numel();
      if (!flag[static_cast<int64_t>(k)]) continue;
      if (p.grad().defined())
        p.mutable_grad().copy_(mean);
      else
        p.mutable_grad() = mean.clone();
    }
  }
}

}  // namespace distillery

#include "distillery/distributed/data_parallel.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <chrono>

#include "distillery/core/error.h"
#include "distillery/distributed/launch_environment.h"
#include "distillery/distributed/process_group.h"

namespace distillery {

std::unique_ptr<DataParallel> DataParallel::from_environment(const DistributedOptions& options) {
  auto env = LaunchEnvironment::from_environment();
  if (!env) return nullptr;
  ProcessGroup::Options group_options;
  group_options.backend = options.backend;
  group_options.timeout_s = options.timeout_s;
  return std::make_unique<DataParallel>(connect_world_group(*env, group_options), options);
}

DataParallel::DataParallel(ProcessGroup& group, const DistributedOptions& options)
    : group_(group),
      options_(options),
      batch_norm_scope_(options.sync_batch_norm ? &group : nullptr) {}

int DataParallel::rank() const { return group_.rank(); }
int DataParallel::world_size() const { return group_.world_size(); }

void DataParallel::broadcast_from_main(const std::vector<torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  for (const auto& t : tensors) {
    auto buffer = t.detach().contiguous();
    group_.broadcast(buffer, 0);
    if (!buffer.is_same(t)) t.detach().copy_(buffer);
  }
}

void DataParallel::average_gradients(const std::vector<torch::Tensor>& parameters) {
  auto begin = std::chrono::steady_clock::now();
  if (!averager_)
    averager_ = std::make_unique<GradientAverager>(
        parameters, static_cast<int64_t>(options_.bucket_mb * 1024 * 1024));
  averager_->average(group_);
  gradient_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
}

std::map<std::string, double> DataParallel::average_values(const std::map<std::string, double>& values) {
  auto packed = torch::empty({static_cast<int64_t>(values.size())}, torch::kDouble);
  auto a = packed.accessor<double, 1>();
  int64_t i = 0;
  for (const auto& entry : values) a[i++] = entry.second;
  group_.all_reduce_sum(packed);
  std::map<std::string, double> mean;
  i = 0;
  for (const auto& entry : values) mean[entry.first] = a[i++] / world_size();
  return mean;
}

void DataParallel::sum(torch::Tensor& tensor) { group_.all_reduce_sum(tensor); }

void DataParallel::barrier() { group_.barrier(); }

}  // namespace distillery

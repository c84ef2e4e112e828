#include "distillery/distributed/process_group.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <functional>

#include "distillery/core/error.h"
#include "distillery/distributed/c10d_compat.h"

namespace distillery {
namespace {

std::string first_line(const std::exception& e) {
  std::string what;
  if (const auto* torch_error = dynamic_cast<const c10::Error*>(&e))
    what = torch_error->what_without_backtrace();
  else
    what = e.what();
  auto end = what.find('\n');
  return end == std::string::npos ? what : what.substr(0, end);
}

std::chrono::milliseconds to_milliseconds(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

bool is_loopback(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1";
}

// Gloo binds to one address: GLOO_SOCKET_IFNAME's interface when set (as in PyTorch), the
// loopback address when the master is local, else the address this host's name resolves to.
std::shared_ptr<::gloo::transport::Device> make_gloo_device(const LaunchEnvironment& env) {
  if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME"); interface && *interface)
    return c10d::ProcessGroupGloo::createDeviceForInterface(interface);
  if (is_loopback(env.master_addr))
    return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

}  // namespace

struct ProcessGroup::Backend {
  c10::intrusive_ptr<c10d::Store> store;  // NCCL exchanges its ids through it after the rendezvous
  c10::intrusive_ptr<compat::CollectiveBackend> collectives;
  bool stage_on_cuda = false;  // NCCL reduces CUDA tensors only: CPU tensors travel through one
  int cuda_device = 0;
};

ProcessGroup::ProcessGroup(const LaunchEnvironment& env, const Options& options)
    : env_(env), options_(options), backend_(std::make_unique<Backend>()) {
  const auto timeout = to_milliseconds(options_.timeout_s);
  const std::string where = fmt::format("distributed: rank {} of {}", env_.rank, env_.world_size);
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<std::uint16_t>(env_.master_port);
    store_options.isServer = env_.rank == 0;
    store_options.numWorkers = static_cast<std::size_t>(env_.world_size);
    store_options.waitWorkers = true;
    store_options.timeout = timeout;
    backend_->store = c10::make_intrusive<c10d::TCPStore>(env_.master_addr, store_options);
  } catch (const std::exception& e) {
    throw Error(fmt::format("{}: rendezvous at {}:{} failed within {} s: {}", where, env_.master_addr,
                            env_.master_port, options_.timeout_s, first_line(e)));
  }
  try {
    if (options_.backend == "gloo") {
      auto gloo_options = c10d::ProcessGroupGloo::Options::create(timeout);
      gloo_options->devices.push_back(make_gloo_device(env_));
      backend_->collectives = c10::make_intrusive<c10d::ProcessGroupGloo>(
          backend_->store, env_.rank, env_.world_size, gloo_options);
    } else if (options_.backend == "nccl") {
#ifdef DISTILLERY_WITH_NCCL
      auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
      nccl_options->timeout = timeout;
      backend_->collectives = c10::make_intrusive<c10d::ProcessGroupNCCL>(
          backend_->store, env_.rank, env_.world_size, nccl_options);
      backend_->stage_on_cuda = true;
      backend_->cuda_device = env_.local_rank;
#else
      throw ConfigError("config key 'train.distributed.backend': 'nccl' needs a LibTorch built with "
                        "CUDA; this build has Gloo only");
#endif
    } else {
      throw ConfigError(fmt::format("config key 'train.distributed.backend': unknown backend '{}' "
                                    "(known: gloo{})", options_.backend,
#ifdef DISTILLERY_WITH_NCCL
                                    ", nccl"
#else
                                    ""
#endif
                                    ));
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(fmt::format("{}: connecting the {} process group failed: {}", where, options_.backend,
                            first_line(e)));
  }
}

ProcessGroup::~ProcessGroup() = default;

namespace {

using Work = c10::intrusive_ptr<c10d::Work>;

// c10d reports failures both when an operation starts (argument checks, closed connections) and
// from wait(); both become one-line Errors naming the rank and the operation.
Work start_collective(const ProcessGroup& group, const char* what, const std::function<Work()>& start) {
  try {
    return start();
  } catch (const std::exception& e) {
    throw Error(fmt::format("distributed: rank {} of {}: {} failed: {}", group.rank(),
                            group.world_size(), what, first_line(e)));
  }
}

void wait_collective(const ProcessGroup& group, const char* what, const Work& work) {
  try {
    work->wait();
  } catch (const std::exception& e) {
    throw Error(fmt::format("distributed: rank {} of {}: {} failed (another rank died or stalled "
                            "longer than the {} s timeout): {}",
                            group.rank(), group.world_size(), what, group.options().timeout_s,
                            first_line(e)));
  }
}

}  // namespace

void ProcessGroup::all_reduce_sum(torch::Tensor& tensor) {
  std::vector<torch::Tensor> one{tensor};
  all_reduce_sum(one);
}

void ProcessGroup::all_reduce_sum(std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> staged;
  for (auto& t : tensors) {
    TORCH_CHECK(t.is_contiguous(), "all_reduce_sum: tensors must be contiguous");
    staged.push_back(backend_->stage_on_cuda && !t.is_cuda()
                         ? t.to(torch::Device(torch::kCUDA, backend_->cuda_device))
                         : t);
  }
  std::vector<Work> works;
  for (auto& t : staged) {
    std::vector<torch::Tensor> single{t};
    c10d::AllreduceOptions reduce_options;
    reduce_options.reduceOp = c10d::ReduceOp::SUM;
    works.push_back(start_collective(*this, "all-reduce", [&] {
      return backend_->collectives->allreduce(single, reduce_options);
    }));
  }
  for (auto& work : works) wait_collective(*this, "all-reduce", work);
  for (size_t i = 0; i < tensors.size(); ++i)
    if (!staged[i].is_same(tensors[i])) tensors[i].copy_(staged[i]);
}

void ProcessGroup::broadcast(torch::Tensor& tensor, int root) {
  TORCH_CHECK(tensor.is_contiguous(), "broadcast: the tensor must be contiguous");
  torch::Tensor staged = backend_->stage_on_cuda && !tensor.is_cuda()
                             ? tensor.to(torch::Device(torch::kCUDA, backend_->cuda_device))
                             : tensor;
  std::vector<torch::Tensor> single{staged};
  c10d::BroadcastOptions broadcast_options;
  broadcast_options.rootRank = root;
  wait_collective(*this, "broadcast", start_collective(*this, "broadcast", [&] {
                    return backend_->collectives->broadcast(single, broadcast_options);
                  }));
  if (!staged.is_same(tensor)) tensor.copy_(staged);
}

torch::Tensor ProcessGroup::all_gather_rows(const torch::Tensor& rows) {
  TORCH_CHECK(rows.dim() >= 1, "all_gather_rows: expected at least one dimension");
  const torch::Device home = rows.device();
  const torch::Device device = backend_->stage_on_cuda ? torch::Device(torch::kCUDA, backend_->cuda_device)
                                                      : home;
  auto gather = [&](torch::Tensor input, const char* what) {
    std::vector<std::vector<torch::Tensor>> outputs(1);
    for (int r = 0; r < env_.world_size; ++r) outputs[0].push_back(torch::empty_like(input));
    std::vector<torch::Tensor> inputs{input};
    wait_collective(*this, what, start_collective(*this, what, [&] {
                      return backend_->collectives->allgather(outputs, inputs);
                    }));
    return outputs[0];
  };
  // Counts first: Gloo gathers equal shapes, so every rank pads its rows to the largest count.
  auto count = torch::full({1}, rows.size(0), torch::TensorOptions(torch::kLong).device(device));
  std::vector<int64_t> counts;
  int64_t largest = 0;
  for (auto& c : gather(count, "all-gather (row counts)")) {
    counts.push_back(c.item<int64_t>());
    largest = std::max(largest, counts.back());
  }
  std::vector<int64_t> shape = rows.sizes().vec();
  shape[0] = largest;
  if (largest == 0) return torch::empty(shape, rows.options());
  auto padded = torch::zeros(shape, rows.options().device(device));
  if (rows.size(0) > 0) padded.slice(0, 0, rows.size(0)).copy_(rows);
  std::vector<torch::Tensor> parts;
  auto gathered = gather(padded, "all-gather (rows)");
  for (int r = 0; r < env_.world_size; ++r) parts.push_back(gathered[r].slice(0, 0, counts[r]));
  return torch::cat(parts).to(home);
}

void ProcessGroup::barrier() {
  // An all-reduce of one element: unlike c10d's barrier it needs no device guessing under NCCL.
  torch::Tensor token = torch::zeros({1});
  all_reduce_sum(token);
}

namespace {
// Never destroyed: destroying a Gloo group joins its worker threads, which can block on a peer
// that died; at exit the operating system closes the sockets instead.
ProcessGroup* the_world_group = nullptr;
}  // namespace

ProcessGroup* world_group() { return the_world_group; }

torch::Tensor gather_rows_from_all_ranks(const torch::Tensor& rows) {
  return the_world_group ? the_world_group->all_gather_rows(rows) : rows;
}

ProcessGroup& connect_world_group(const LaunchEnvironment& env, const ProcessGroup::Options& options) {
  if (the_world_group == nullptr) the_world_group = new ProcessGroup(env, options);
  return *the_world_group;
}

}  // namespace distillery

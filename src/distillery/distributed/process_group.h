// A connected group of processes and the collectives Distillery needs, on torch's c10d: a
// TCPStore at MASTER_ADDR:MASTER_PORT for the rendezvous, then ProcessGroupGloo (CPU tensors)
// or ProcessGroupNCCL (builds whose LibTorch has CUDA). Every rank must call the same
// collectives in the same order. A collective that fails (a peer died, or stalled longer than
// the timeout) throws distillery::Error with one line naming this rank and the operation.
#pragma once
#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "distillery/distributed/launch_environment.h"

namespace distillery {

class ProcessGroup {
 public:
  struct Options {
    std::string backend = "gloo";  // gloo | nccl (only in builds whose LibTorch has CUDA)
    double timeout_s = 300;        // rendezvous and every collective
  };

  // Blocks until all world_size ranks have joined (or the timeout passes).
  ProcessGroup(const LaunchEnvironment& env, const Options& options);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  const Options& options() const { return options_; }

  // Element-wise sums across ranks, in place; the tensors must be contiguous. Several tensors
  // are reduced concurrently and waited for together.
  void all_reduce_sum(torch::Tensor& tensor);
  void all_reduce_sum(std::vector<torch::Tensor>& tensors);
  // Rank `root`'s values into every rank's tensor (contiguous, same shape on every rank).
  void broadcast(torch::Tensor& tensor, int root = 0);
  // Every rank's rows [n_r, ...] concatenated in rank order; n_r may differ between ranks, the
  // trailing shape and dtype may not.
  torch::Tensor all_gather_rows(const torch::Tensor& rows);
  void barrier();

 private:
  struct Backend;
  LaunchEnvironment env_;
  Options options_;
  std::unique_ptr<Backend> backend_;
};

// This process's group, or nullptr in a single-process run. connect_world_group() creates it on
// the first call (later calls return the same group: a teacher trained on the fly and the student
// after it share one rendezvous). It lives until the process exits.
ProcessGroup* world_group();
ProcessGroup& connect_world_group(const LaunchEnvironment& env, const ProcessGroup::Options& options);

// world_group()->all_gather_rows(rows) in a multi-process run, `rows` itself otherwise.
torch::Tensor gather_rows_from_all_ranks(const torch::Tensor& rows);

}  // namespace distillery

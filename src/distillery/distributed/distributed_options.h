// Recipe keys under train.distributed: read in every run (strict configs reject unknown keys),
// used only when the environment describes a multi-process run.
#pragma once
#include <string>

namespace distillery {

class ConfigSection;

struct DistributedOptions {
  bool sync_batch_norm = false;  // BatchNorm statistics over the global batch (default: local)
  double bucket_mb = 25;         // gradient all-reduce bucket size
  double timeout_s = 300;        // rendezvous and every collective; DISTILL_TIMEOUT_S when unset
  std::string backend = "gloo";  // gloo | nccl (builds whose LibTorch has CUDA)

  static DistributedOptions from_config(const ConfigSection& section);
};

}  // namespace distillery

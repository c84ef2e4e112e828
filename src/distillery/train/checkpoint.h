// Checkpoint files: the model, the distillers' learnable parts, the optimizer state, the RNG
// state and the config they came from, behind a checksum. Written atomically (temporary file,
// fsync, rename), so a crash mid-write never destroys the previous good checkpoint.
#pragma once
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <string>

namespace distillery {

struct CheckpointMeta {
  int64_t step = 0;
  double best_metric = -1.0;
  std::string model_name;
  int64_t num_classes = 0;
  std::string config_yaml;  // the resolved recipe this checkpoint was trained with
};

struct CheckpointParts {
  torch::nn::Module* model = nullptr;       // required
  torch::nn::Module* distillers = nullptr;  // optional
  torch::optim::Optimizer* optimizer = nullptr;  // optional
  bool rng = false;                          // torch's global CPU generator state
};

void save_checkpoint(const std::string& path, const CheckpointMeta& meta, const CheckpointParts& parts);

// Verifies magic, lengths and checksum before touching any module; throws Error naming the
// file on any problem (missing, truncated, corrupt, or parameters that do not match).
CheckpointMeta load_checkpoint(const std::string& path, const CheckpointParts& parts);

// Reads only the metadata (after the same integrity checks).
CheckpointMeta read_checkpoint_meta(const std::string& path);

}  // namespace distillery

// Checkpoint files: the model, the distillers' learnable parts, the optimizer state, the RNG
// state and the config they came from, behind a checksum. Written atomically (temporary file,
// fsync, rename), so a crash mid-write never destroys the previous good checkpoint.
#pragma once
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <string>
#include <vector>

namespace distillery {

struct CheckpointMeta {
  int64_t step = 0;
  double best_metric = -1.0;
  std::string model_name;
  int64_t num_classes = 0;
  std::string config_yaml;  // the resolved recipe this checkpoint was trained with
  int64_t threads = 0;      // intra-op threads of the writing run (0: not recorded); results
                            // are bit-reproducible only with the same count (docs/reliability.md)
};

struct CheckpointParts {
  torch::nn::Module* model = nullptr;       // required
  torch::nn::Module* distillers = nullptr;  // optional
  torch::optim::Optimizer* optimizer = nullptr;  // optional
  bool rng = false;                          // torch's global CPU generator state
};

// keep_previous_as: when `path` already holds a checkpoint that passes its integrity check, it
// is kept under this name (replacing the one there) before the new one takes its place.
void save_checkpoint(const std::string& path, const CheckpointMeta& meta, const CheckpointParts& parts,
                     const std::string& keep_previous_as = "");

// Verifies magic, lengths and checksum before touching any module; throws Error naming the
// file on any problem (missing, truncated, corrupt, or parameters that do not match).
CheckpointMeta load_checkpoint(const std::string& path, const CheckpointParts& parts);

// Reads only the metadata (after the same integrity checks).
CheckpointMeta read_checkpoint_meta(const std::string& path);

// One stored value: its path (section.submodule.name) and a summary (dtype, shape and a CRC-32
// of the bytes for tensors, the value itself otherwise).
struct CheckpointEntry {
  std::string name;
  std::string summary;
};

// Every tensor and value in the file's sections (model, distillers, optimizer, rng), sorted by
// name: two checkpoints hold the same state exactly when these lists are equal. (The files'
// bytes can differ for the same state: LibTorch's archive numbers its records per process.)
std::vector<CheckpointEntry> checkpoint_contents(const std::string& path);

// "" when the file passes the integrity checks (magic, version, sizes, checksum, metadata),
// otherwise the one-line error read_checkpoint_meta would throw.
std::string checkpoint_problem(const std::string& path);

}  // namespace distillery

// A recipe: one YAML file naming the data, the student, the optional teacher and distillers,
// and the training schedule. Every field is validated when it is read; keys no code reads are
// rejected by Config::check_all_consumed once the run is fully built.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "distillery/core/config.h"
#include "distillery/data/augment.h"
#include "distillery/data/fashion_seg.h"
#include "distillery/data/file_dataset.h"
#include "distillery/distributed/distributed_options.h"
#include "distillery/models/model.h"

namespace distillery {

struct DataSpec {
  // fashion-seg | fashion-mnist (embedded) | cityscapes | voc | ade20k | folder (on disk)
  std::string benchmark = "fashion-seg";
  FashionSegOptions fashion_seg;          // used by fashion-seg
  std::string mnist_dir = "/usr/share/datasets/fashion-mnist";
  AugmentOptions augment;
  // On-disk datasets (see docs/datasets.md): root directory, split names, VOC label directory,
  // training crop, base rescale factor, full-resolution inference, and the class count (fixed
  // per benchmark; for folder, the lines of classes.txt).
  std::string root, train_split, val_split, label_dir = "SegmentationClass";
  int64_t crop_size = 512;
  double resize = 1.0;
  InferenceOptions inference;
  int64_t num_classes = 11;
  bool on_disk() const { return benchmark != "fashion-seg" && benchmark != "fashion-mnist"; }
  Task task() const { return benchmark == "fashion-mnist" ? Task::Classification : Task::Segmentation; }
};

struct ModelSpec {
  std::string name;
  ModelOptions options;
  std::string pretrained;  // optional safetensors file the model starts from (train/pretrained.h)
};

struct OptimizerOptions {
  std::string type = "sgd";  // sgd | adamw | dot
  double lr = 0.01;
  double momentum = 0.9;
  double weight_decay = 1e-4;  // applied to weights with >1 dimension (not norms or biases)
  double beta1 = 0.9, beta2 = 0.999;
  int64_t warmup_steps = 0;    // linear warm-up from warmup_start_factor * lr
  double warmup_start_factor = 0.1;
  double poly_power = 0.9;     // lr * (1 - step/steps)^power after warm-up
  double grad_clip = 0.0;      // max global gradient norm; 0 disables
  double delta = 0.075;        // DOT: task momentum - delta, distillation momentum + delta
};

struct TrainOptions {
  int64_t steps = 2000;
  int64_t batch_size = 16;
  int64_t eval_every = 500;        // also evaluated at the end
  int64_t checkpoint_every = 0;    // 0: at every evaluation
  int64_t log_every = 10;
  int64_t eval_batch_size = 100;
  int64_t prefetch = 4;
  double task_weight = 1.0;        // weight of the task loss (mdistiller's KD on CIFAR: 0.1)
  double aux_weight = 0.4;         // FCN auxiliary head loss weight (when the model has one)
  bool skip_nonfinite = false;     // skip a step whose loss is NaN/Inf instead of stopping
  OptimizerOptions optimizer;
  DistributedOptions distributed;  // multi-process runs (RANK/WORLD_SIZE... in the environment)
};

struct TeacherSpec {
  bool enabled = false;
  std::string source = "online";  // online | cache (precomputed outputs, `distill cache-teacher`)
  ModelSpec model;                // optional with a cache (then checked against it)
  std::string cache_path;         // source: cache
  std::string checkpoint;         // a Distillery checkpoint (latest.ckpt / best.ckpt); empty when
                                  // the teacher comes from a cache or from model.pretrained
  std::string recipe;             // trains the teacher into dirname(checkpoint) when it is missing
};

struct Recipe {
  Config config;
  std::string name;
  uint64_t seed = 0;
  std::string run_dir;
  DataSpec data;
  ModelSpec student;
  TeacherSpec teacher;
  std::vector<ConfigSection> distillers;  // parsed by DistillerSet
  TrainOptions train;

  // Loads, applies `--set key=value` overrides, parses and validates every section except
  // the distillers' own keys (checked when they are built).
  static Recipe load(const std::string& path, const std::vector<std::string>& overrides = {});
  static Recipe parse(Config config);
};

ModelSpec parse_model_spec(const ConfigSection& section, const DataSpec& data);

}  // namespace distillery

#include "distillery/train/recipe.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "distillery/data/folder_dataset.h"
#include "distillery/models/zoo.h"

namespace distillery {
namespace {

// The keys of on-disk datasets; split defaults follow each layout's own names.
void parse_on_disk_data(const ConfigSection& s, DataSpec& data) {
  data.root = s.require<std::string>("root");
  s.check(std::filesystem::is_directory(data.root), "root",
          fmt::format("directory '{}' does not exist", data.root));
  const bool ade = data.benchmark == "ade20k";
  data.train_split = s.get<std::string>("train_split", ade ? "training" : "train");
  data.val_split = s.get<std::string>("val_split", ade ? "validation" : "val");
  if (data.benchmark == "voc") data.label_dir = s.get<std::string>("label_dir", data.label_dir);
  data.crop_size = s.get<int64_t>("crop_size", data.crop_size);
  s.check(data.crop_size >= 16 && data.crop_size <= 4096, "crop_size", "must be in [16, 4096]");
  data.resize = s.get<double>("resize", data.resize);
  s.check(data.resize > 0 && data.resize <= 4, "resize", "must be in (0, 4]");
  ConfigSection eval = s.section("eval");
  data.inference.mode = eval.get_choice("mode", "whole", {"whole", "slide"});
  data.inference.crop = eval.get<int64_t>("crop", data.crop_size);
  eval.check(data.inference.crop >= 16, "crop", "must be >= 16");
  data.inference.stride = eval.get<int64_t>("stride", std::max<int64_t>(1, data.inference.crop * 2 / 3));
  eval.check(data.inference.stride >= 1 && data.inference.stride <= data.inference.crop, "stride",
             "must be in [1, eval.crop]");
  if (data.benchmark == "cityscapes") data.num_classes = 19;
  if (data.benchmark == "voc") data.num_classes = 21;
  if (data.benchmark == "ade20k") data.num_classes = 150;
  if (data.benchmark == "folder") {
    try {
      data.num_classes = static_cast<int64_t>(read_folder_classes(data.root + "/classes.txt").names.size());
    } catch (const DataError& e) {
      throw ConfigError(fmt::format("config key '{}': {}", s.key_path("root"), e.what()));
    }
  }
}

DataSpec parse_data(const ConfigSection& s) {
  DataSpec data;
  data.benchmark = s.get_choice("benchmark", data.benchmark,
                                {"fashion-seg", "fashion-mnist", "cityscapes", "voc", "ade20k", "folder"});
  if (data.on_disk()) {
    parse_on_disk_data(s, data);
  } else {
    data.mnist_dir = s.get<std::string>("mnist_dir", data.mnist_dir);
    if (data.benchmark == "fashion-seg") {
      data.fashion_seg = FashionSegOptions::from_config(s.section("fashion_seg"));
      data.fashion_seg.mnist_dir = data.mnist_dir;
    }
  }
  data.augment = AugmentOptions::from_config(s.section("augment"));
  return data;
}

OptimizerOptions parse_optimizer(const ConfigSection& s) {
  OptimizerOptions o;
  o.type = s.get_choice("type", o.type, {"sgd", "adamw", "dot"});
  if (o.type == "adamw") o.lr = 6e-4, o.weight_decay = 0.01;
  o.lr = s.get("lr", o.lr);
  s.check(std::isfinite(o.lr) && o.lr > 0, "lr", "must be a finite number > 0");
  o.momentum = s.get("momentum", o.momentum);
  s.check(o.momentum >= 0 && o.momentum < 1, "momentum", "must be in [0, 1)");
  o.weight_decay = s.get("weight_decay", o.weight_decay);
  s.check(std::isfinite(o.weight_decay) && o.weight_decay >= 0, "weight_decay", "must be a finite number >= 0");
  o.beta1 = s.get("beta1", o.beta1);
  o.beta2 = s.get("beta2", o.beta2);
  s.check(o.beta1 >= 0 && o.beta1 < 1, "beta1", "must be in [0, 1)");
  s.check(o.beta2 >= 0 && o.beta2 < 1, "beta2", "must be in [0, 1)");
  o.warmup_steps = s.get("warmup_steps", o.warmup_steps);
  s.check(o.warmup_steps >= 0, "warmup_steps", "must be >= 0");
  o.warmup_start_factor = s.get("warmup_start_factor", o.warmup_start_factor);
  s.check(o.warmup_start_factor > 0 && o.warmup_start_factor <= 1, "warmup_start_factor",
          "must be in (0, 1]");
  o.poly_power = s.get("poly_power", o.poly_power);
  s.check(std::isfinite(o.poly_power) && o.poly_power >= 0, "poly_power", "must be a finite number >= 0");
  o.grad_clip = s.get("grad_clip", o.grad_clip);
  s.check(std::isfinite(o.grad_clip) && o.grad_clip >= 0, "grad_clip", "must be a finite number >= 0 (0 disables)");
  if (o.type == "dot") {
    o.delta = s.get("delta", o.delta);
    s.check(o.delta >= 0, "delta", "must be >= 0");
    s.check(o.momentum - o.delta >= 0 && o.momentum + o.delta < 1, "delta",
            "needs 0 <= momentum - delta and momentum + delta < 1");
    s.check(o.grad_clip == 0, "grad_clip", "is not supported with type dot (two gradients per step)");
  }
  return o;
}

TrainOptions parse_train(const ConfigSection& s) {
  TrainOptions t;
  t.steps = s.get("steps", t.steps);
  s.check(t.steps > 0, "steps", "must be > 0");
  t.batch_size = s.get("batch_size", t.batch_size);
  s.check(t.batch_size > 0, "batch_size", "must be > 0");
  t.eval_every = s.get("eval_every", t.eval_every);
  s.check(t.eval_every > 0, "eval_every", "must be > 0");
  t.checkpoint_every = s.get("checkpoint_every", t.checkpoint_every);
  s.check(t.checkpoint_every >= 0, "checkpoint_every", "must be >= 0 (0: at every evaluation)");
  t.log_every = s.get("log_every", t.log_every);
  s.check(t.log_every > 0, "log_every", "must be > 0");
  t.eval_batch_size = s.get("eval_batch_size", t.eval_batch_size);
  s.check(t.eval_batch_size > 0, "eval_batch_size", "must be > 0");
  t.prefetch = s.get("prefetch", t.prefetch);
  s.check(t.prefetch > 0, "prefetch", "must be > 0");
  t.task_weight = s.get("task_weight", t.task_weight);
  s.check(std::isfinite(t.task_weight) && t.task_weight >= 0, "task_weight", "must be a finite number >= 0");
  t.aux_weight = s.get("aux_weight", t.aux_weight);
  s.check(std::isfinite(t.aux_weight) && t.aux_weight >= 0, "aux_weight", "must be a finite number >= 0");
  t.skip_nonfinite = s.get("skip_nonfinite", t.skip_nonfinite);
  t.optimizer = parse_optimizer(s.section("optimizer"));
  t.distributed = DistributedOptions::from_config(s.section("distributed"));
  return t;
}

}  // namespace

ModelSpec parse_model_spec(const ConfigSection& s, const DataSpec& data) {
  ModelSpec spec;
  spec.name = s.require<std::string>("name");
  const ZooEntry& entry = find_model(spec.name);
  bool classification = data.task() == Task::Classification;
  if ((entry.task == Task::Classification) != classification)
    throw ConfigError(fmt::format("config key '{}': model '{}' is a {} model but the data is {}",
                                  s.key_path("name"), spec.name,
                                  entry.task == Task::Classification ? "classification" : "segmentation",
                                  data.benchmark));
  ModelOptions& o = spec.options;
  o.num_classes = classification ? 10 : data.num_classes;
  o.in_channels = data.on_disk() ? 3 : 1;
  o.input_size = classification ? 28 : data.on_disk() ? data.crop_size : data.fashion_seg.canvas;
  spec.pretrained = s.get<std::string>("pretrained", "");
  s.check(spec.pretrained.empty() || std::filesystem::is_regular_file(spec.pretrained), "pretrained",
          fmt::format("file '{}' does not exist", spec.pretrained));
  o.aux_head = s.get("aux_head", o.aux_head);
  o.width = s.get("width", o.width);
  s.check(o.width >= 0, "width", "must be >= 0 (0: the preset's width)");
  o.drop_path = s.get("drop_path", o.drop_path);
  s.check(o.drop_path >= 0 && o.drop_path < 1, "drop_path", "must be in [0, 1)");
  o.head_dropout = s.get("head_dropout", o.head_dropout);
  s.check(o.head_dropout < 1 && (o.head_dropout >= 0 || o.head_dropout == -1), "head_dropout",
          "must be in [0, 1) (-1: the preset's)");
  return spec;
}

Recipe Recipe::load(const std::string& path, const std::vector<std::string>& overrides) {
  Config config = Config::load_file(path);
  for (const auto& o : overrides) config.apply_override(o);
  return parse(std::move(config));
}

Recipe Recipe::parse(Config config) {
  Recipe r;
  r.config = std::move(config);
  ConfigSection root = r.config.root();
  std::string stem = std::filesystem::path(r.config.origin()).stem().string();
  r.name = root.get<std::string>("name", stem.empty() ? "run" : stem);
  int64_t seed = root.get<int64_t>("seed", 0);
  root.check(seed >= 0, "seed", "must be >= 0");
  r.seed = static_cast<uint64_t>(seed);
  r.run_dir = root.section("output").get<std::string>("dir", "runs/" + r.name);
  r.data = parse_data(root.section("data"));
  r.student = parse_model_spec(root.section("model"), r.data);
  r.train = parse_train(root.section("train"));

  if (root.has("teacher")) {
    ConfigSection t = root.section("teacher");
    r.teacher.enabled = true;
    r.teacher.source = t.get_choice("source", r.teacher.source, {"online", "cache"});
    const bool cached = r.teacher.source == "cache";
    // A cached teacher needs only the cache; model and checkpoint may stay in the recipe (the
    // model name is then checked against the cache) so that switching is one --set.
    if (t.has("model") || !cached) r.teacher.model = parse_model_spec(t.section("model"), r.data);
    const bool pretrained = !cached && !r.teacher.model.pretrained.empty();
    r.teacher.checkpoint = t.get<std::string>("checkpoint", "");
    r.teacher.recipe = t.get<std::string>("recipe", "");
    r.teacher.cache_path = cached ? t.require<std::string>("path") : t.get<std::string>("path", "");
    if (cached && !std::filesystem::exists(r.teacher.cache_path))
      throw ConfigError(fmt::format("config key 'teacher.path': teacher cache '{}' does not exist "
                                    "(build it with `distill cache-teacher`)", r.teacher.cache_path));
    if (pretrained && (!r.teacher.checkpoint.empty() || !r.teacher.recipe.empty()))
      throw ConfigError("config key 'teacher.model.pretrained': a teacher comes either from "
                        "model.pretrained or from checkpoint (+ recipe), not both");
    if (!cached && !pretrained && r.teacher.checkpoint.empty())
      throw ConfigError("config key 'teacher.checkpoint': required (or give teacher.model.pretrained)");
    bool present = cached || pretrained || std::filesystem::exists(r.teacher.checkpoint);
    if (!present && r.teacher.recipe.empty())
      throw ConfigError(fmt::format(
          "config key 'teacher.checkpoint': file '{}' does not exist (and no teacher.recipe to train it)",
          r.teacher.checkpoint));
    if (!r.teacher.recipe.empty() && !std::filesystem::exists(r.teacher.recipe))
      throw ConfigError(fmt::format("config key 'teacher.recipe': file '{}' does not exist",
                                    r.teacher.recipe));
  }
  r.distillers = root.section_list("distillers");
  if (!r.distillers.empty() && !r.teacher.enabled)
    throw ConfigError("config key 'distillers': distillers need a 'teacher' block");
  if (r.train.task_weight == 0 && r.distillers.empty())
    throw ConfigError("config key 'train.task_weight': 0 leaves no loss to train without distillers");
  return r;
}

}  // namespace distillery

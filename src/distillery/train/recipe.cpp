#include "distillery/train/recipe.h"

#include <fmt/format.h>

#include <filesystem>

#include "distillery/models/zoo.h"

namespace distillery {
namespace {

DataSpec parse_data(const ConfigSection& s) {
  DataSpec data;
  data.benchmark = s.get_choice("benchmark", data.benchmark, {"fashion-seg", "fashion-mnist"});
  data.mnist_dir = s.get<std::string>("mnist_dir", data.mnist_dir);
  if (data.benchmark == "fashion-seg") {
    data.fashion_seg = FashionSegOptions::from_config(s.section("fashion_seg"));
    data.fashion_seg.mnist_dir = data.mnist_dir;
  }
  data.augment = AugmentOptions::from_config(s.section("augment"));
  return data;
}

OptimizerOptions parse_optimizer(const ConfigSection& s) {
  OptimizerOptions o;
  o.type = s.get_choice("type", o.type, {"sgd", "adamw", "dot"});
  if (o.type == "adamw") o.lr = 6e-4, o.weight_decay = 0.01;
  o.lr = s.get("lr", o.lr);
  s.check(o.lr > 0, "lr", "must be > 0");
  o.momentum = s.get("momentum", o.momentum);
  s.check(o.momentum >= 0 && o.momentum < 1, "momentum", "must be in [0, 1)");
  o.weight_decay = s.get("weight_decay", o.weight_decay);
  s.check(o.weight_decay >= 0, "weight_decay", "must be >= 0");
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
  s.check(o.poly_power >= 0, "poly_power", "must be >= 0");
  o.grad_clip = s.get("grad_clip", o.grad_clip);
  s.check(o.grad_clip >= 0, "grad_clip", "must be >= 0 (0 disables)");
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
  t.aux_weight = s.get("aux_weight", t.aux_weight);
  s.check(t.aux_weight >= 0, "aux_weight", "must be >= 0");
  t.skip_nonfinite = s.get("skip_nonfinite", t.skip_nonfinite);
  t.optimizer = parse_optimizer(s.section("optimizer"));
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
  o.num_classes = classification ? 10 : 11;
  o.in_channels = 1;
  o.input_size = classification ? 28 : data.fashion_seg.canvas;
  o.aux_head = s.get("aux_head", o.aux_head);
  o.width = s.get("width", o.width);
  s.check(o.width >= 0, "width", "must be >= 0 (0: the preset's width)");
  o.drop_path = s.get("drop_path", o.drop_path);
  s.check(o.drop_path >= 0 && o.drop_path < 1, "drop_path", "must be in [0, 1)");
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
    r.teacher.checkpoint = cached ? t.get<std::string>("checkpoint", "") : t.require<std::string>("checkpoint");
    r.teacher.recipe = t.get<std::string>("recipe", "");
    r.teacher.cache_path = cached ? t.require<std::string>("path") : t.get<std::string>("path", "");
    if (cached && !std::filesystem::exists(r.teacher.cache_path))
      throw ConfigError(fmt::format("config key 'teacher.path': teacher cache '{}' does not exist "
                                    "(build it with `distill cache-teacher`)", r.teacher.cache_path));
    bool present = cached || std::filesystem::exists(r.teacher.checkpoint);
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
  return r;
}

}  // namespace distillery

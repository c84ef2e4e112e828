#include "distillery/train/resume.h"

#include <fmt/format.h>
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <filesystem>

#include "distillery/core/error.h"

namespace distillery {
namespace {

std::string show(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "unset";
  if (node.IsScalar()) return "'" + node.Scalar() + "'";
  YAML::Emitter out;
  out << YAML::Flow << node;
  return out.c_str();
}

// The first key path under `path` whose value differs between a and b ("" when none).
std::string first_difference(const YAML::Node& a, const YAML::Node& b, const std::string& path,
                             std::string* was, std::string* now) {
  bool a_map = a.IsDefined() && a.IsMap(), b_map = b.IsDefined() && b.IsMap();
  if (a_map && b_map) {
    std::vector<std::string> keys;
    for (const auto& item : a) keys.push_back(item.first.as<std::string>());
    for (const auto& item : b)
      if (!a[item.first.as<std::string>()].IsDefined()) keys.push_back(item.first.as<std::string>());
    for (const auto& key : keys) {
      std::string found = first_difference(a[key], b[key], path + "." + key, was, now);
      if (!found.empty()) return found;
    }
    return "";
  }
  if (show(a) == show(b)) return "";
  *was = show(a);
  *now = show(b);
  return path;
}

}  // namespace

std::string resume_checkpoint(const std::string& run_dir) {
  const std::string latest = run_dir + "/" + kLatestCheckpoint;
  const std::string previous = run_dir + "/" + kPreviousCheckpoint;
  if (!std::filesystem::exists(latest) && !std::filesystem::exists(previous))
    throw Error(fmt::format("cannot resume: no checkpoint at '{}'", latest));
  std::string problem = std::filesystem::exists(latest) ? checkpoint_problem(latest)
                                                          : fmt::format("'{}' is missing", latest);
  if (problem.empty()) return latest;
  if (std::filesystem::exists(previous) && checkpoint_problem(previous).empty()) {
    std::fprintf(stderr, "warning: %s; resuming from the previous good checkpoint '%s' (step %lld)\n",
                 problem.c_str(), previous.c_str(),
                 static_cast<long long>(read_checkpoint_meta(previous).step));
    return previous;
  }
  throw Error(fmt::format("cannot resume: {} (and no good '{}' to fall back to)", problem, previous));
}

void check_resumable(const std::string& path, const CheckpointMeta& meta, const Recipe& recipe,
                     int64_t num_classes) {
  if (meta.model_name != recipe.student.name)
    throw ConfigError(fmt::format("cannot resume '{}': it was trained with model '{}', the recipe names '{}'",
                                  path, meta.model_name, recipe.student.name));
  if (meta.num_classes != num_classes)
    throw ConfigError(fmt::format("cannot resume '{}': it has {} classes, the recipe {}", path,
                                  meta.num_classes, num_classes));
  if (meta.threads > 0 && meta.threads != torch::get_num_threads())
    std::fprintf(stderr,
                 "warning: '%s' was written by a run with %lld threads, this one has %d: it continues, "
                 "but not bit for bit as the uninterrupted run would have (--threads %lld would)\n",
                 path.c_str(), static_cast<long long>(meta.threads), torch::get_num_threads(),
                 static_cast<long long>(meta.threads));
  YAML::Node stored;
  try {
    stored = YAML::Load(meta.config_yaml);
  } catch (const YAML::Exception& e) {
    throw Error(fmt::format("checkpoint '{}': its stored recipe is not valid YAML ({})", path, e.msg));
  }
  if (!stored.IsMap()) return;  // checkpoints written outside a recipe carry no settings to compare
  // Const handles: indexing a non-const yaml-cpp node can add keys to the recipe's document.
  const YAML::Node& was_doc = stored;
  const YAML::Node current = recipe.config.node();
  auto model_of_teacher = [](const YAML::Node& doc) {
    const YAML::Node teacher = doc["teacher"];
    return teacher.IsDefined() && teacher.IsMap() ? teacher["model"] : YAML::Node();
  };
  const std::pair<std::string, std::pair<YAML::Node, YAML::Node>> compared[] = {
      {"model", {was_doc["model"], current["model"]}},
      {"teacher.model", {model_of_teacher(was_doc), model_of_teacher(current)}}};
  for (const auto& [key_path, nodes] : compared) {
    std::string was, now;
    std::string key = first_difference(nodes.first, nodes.second, key_path, &was, &now);
    if (!key.empty())
      throw ConfigError(fmt::format(
          "cannot resume '{}': config key '{}' was {} in the run that wrote it, the recipe has {}",
          path, key, was, now));
  }
}

}  // namespace distillery

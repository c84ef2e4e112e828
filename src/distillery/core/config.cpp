#include "distillery/core/config.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <sstream>

namespace distillery {
namespace {

const char* kSubtreeMark = "\x01subtree:";

std::string join_path(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string parent_of(const std::string& path) {
  auto dot = path.rfind('.');
  return dot == std::string::npos ? "" : path.substr(0, dot);
}

std::string leaf_of(const std::string& path) {
  auto dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

std::string describe(const YAML::Node& node) {
  if (node.IsScalar()) return "'" + node.Scalar() + "'";
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  return "nothing";
}

bool is_index(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

Config Config::load_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(fmt::format("config file '{}': cannot be opened", path));
  std::stringstream text;
  text << in.rdbuf();
  return from_string(text.str(), path);
}

Config Config::from_string(const std::string& yaml_text, const std::string& origin) {
  Config config;
  config.origin_ = origin;
  try {
    config.root_ = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("config file '{}': YAML error at line {}: {}", origin,
                                  e.mark.line + 1, e.msg));
  }
  if (config.root_.IsNull()) config.root_ = YAML::Node(YAML::NodeType::Map);
  if (!config.root_.IsMap())
    throw ConfigError(fmt::format("config file '{}': the top level must be a mapping", origin));
  return config;
}

void Config::apply_override(const std::string& assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError(fmt::format("override '{}': expected key=value", assignment));
  std::string key = assignment.substr(0, eq);
  YAML::Node value;
  try {
    value = YAML::Load(assignment.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("override '{}': value is not valid YAML: {}", assignment, e.msg));
  }
  // Walk with fresh handles: yaml-cpp nodes are references, so assigning to a child of a
  // copied handle edits the document.
  std::vector<std::string> parts;
  std::stringstream ss(key);
  for (std::string part; std::getline(ss, part, '.');) {
    if (part.empty()) throw ConfigError(fmt::format("override '{}': empty key segment", assignment));
    parts.push_back(part);
  }
  std::vector<YAML::Node> chain{root_};
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node current = chain.back();
    YAML::Node next;
    if (current.IsSequence() && is_index(parts[i])) {
      size_t index = std::stoul(parts[i]);
      if (index >= current.size())
        throw ConfigError(fmt::format("override '{}': index {} out of range", assignment, index));
      next = current[index];
    } else {
      if (current.IsScalar())
        throw ConfigError(fmt::format("override '{}': '{}' is not a mapping", assignment, parts[i]));
      next = current[parts[i]];
      if (!next.IsDefined() || next.IsNull()) {
        current[parts[i]] = YAML::Node(YAML::NodeType::Map);
        next = current[parts[i]];
      }
    }
    chain.push_back(next);
  }
  YAML::Node last = chain.back();
  if (last.IsSequence() && is_index(parts.back())) {
    size_t index = std::stoul(parts.back());
    if (index >= last.size())
      throw ConfigError(fmt::format("override '{}': index {} out of range", assignment, index));
    last[index] = value;
  } else {
    last[parts.back()] = value;
  }
}

ConfigSection Config::root() { return ConfigSection(root_, "", consumed_); }

void Config::check_all_consumed() const {
  std::vector<std::string> unknown;
  std::function<void(const YAML::Node&, const std::string&)> walk =
      [&](const YAML::Node& node, const std::string& path) {
        if (!path.empty() && consumed_->count(kSubtreeMark + path)) return;
        if (node.IsMap()) {
          for (const auto& item : node) {
            std::string child = join_path(path, item.first.as<std::string>());
            if (!consumed_->count(child)) {
              unknown.push_back(child);
              continue;
            }
            walk(item.second, child);
          }
        } else if (node.IsSequence()) {
          for (size_t i = 0; i < node.size(); ++i)
            if (node[i].IsMap()) walk(node[i], path + "." + std::to_string(i));
        }
      };
  walk(root_, "");
  if (unknown.empty()) return;
  const std::string& bad = unknown.front();
  // Suggest the closest key the code knows under the same parent.
  std::string best;
  size_t best_distance = 3;
  for (const auto& entry : *consumed_) {
    std::string known = entry.rfind("\x02", 0) == 0 ? entry.substr(1) : entry;
    if (known.rfind(kSubtreeMark, 0) == 0 || parent_of(known) != parent_of(bad)) continue;
    size_t d = edit_distance(leaf_of(known), leaf_of(bad));
    if (d < best_distance) best_distance = d, best = known;
  }
  std::string hint = best.empty() ? "" : fmt::format(" (did you mean '{}'?)", best);
  throw ConfigError(fmt::format("config '{}': unknown key '{}'{}", origin_, bad, hint));
}

std::string Config::dump() const {
  YAML::Emitter out;
  out << root_;
  return std::string(out.c_str()) + "\n";
}

ConfigSection::ConfigSection(YAML::Node node, std::string path,
                             std::shared_ptr<std::set<std::string>> consumed)
    : node_(node), path_(std::move(path)), consumed_(std::move(consumed)) {}

std::string ConfigSection::key_path(const std::string& key) const { return join_path(path_, key); }

YAML::Node ConfigSection::child(const std::string& key) const {
  // Absent keys are remembered as known (prefix \x02) so that typo suggestions can name them.
  std::string full = key_path(key);
  if (!node_.IsMap()) {
    consumed_->insert("\x02" + full);
    return YAML::Node();
  }
  YAML::Node value = node_[key];
  if (value.IsDefined()) {
    consumed_->insert(full);
  } else {
    consumed_->insert("\x02" + full);
  }
  return value;
}

bool ConfigSection::has(const std::string& key) const {
  return node_.IsMap() && node_[key].IsDefined() && !node_[key].IsNull();
}

template <typename T>
T ConfigSection::convert(const YAML::Node& value, const std::string& key) const {
  auto fail = [&](const char* expected) -> ConfigError {
    return ConfigError(fmt::format("config key '{}': expected {}, got {}", key_path(key), expected,
                                   describe(value)));
  };
  if constexpr (std::is_same_v<T, bool>) {
    if (!value.IsScalar()) throw fail("true or false");
    const std::string& s = value.Scalar();
    if (s == "true" || s == "True" || s == "yes" || s == "on") return true;
    if (s == "false" || s == "False" || s == "no" || s == "off") return false;
    throw fail("true or false");
  } else if constexpr (std::is_integral_v<T>) {
    if (!value.IsScalar()) throw fail("an integer");
    const std::string& s = value.Scalar();
    try {
      size_t used = 0;
      long long parsed = std::stoll(s, &used);
      if (used != s.size()) throw fail("an integer");
      return static_cast<T>(parsed);
    } catch (const std::logic_error&) {
      throw fail("an integer");
    }
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!value.IsScalar()) throw fail("a number");
    const std::string& s = value.Scalar();
    try {
      size_t used = 0;
      double parsed = std::stod(s, &used);
      if (used != s.size()) throw fail("a number");
      return static_cast<T>(parsed);
    } catch (const std::logic_error&) {
      throw fail("a number");
    }
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!value.IsScalar()) throw fail("a string");
    return value.Scalar();
  } else {
    using Element = typename T::value_type;
    if (!value.IsSequence()) throw fail("a list");
    T out;
    for (size_t i = 0; i < value.size(); ++i)
      out.push_back(convert<Element>(value[i], key + "[" + std::to_string(i) + "]"));
    return out;
  }
}

template <typename T>
T ConfigSection::get(const std::string& key, const T& fallback) const {
  YAML::Node value = child(key);
  if (!value.IsDefined() || value.IsNull()) return fallback;
  return convert<T>(value, key);
}

template <typename T>
T ConfigSection::require(const std::string& key) const {
  YAML::Node value = child(key);
  if (!value.IsDefined() || value.IsNull())
    throw ConfigError(fmt::format("config key '{}': required but missing", key_path(key)));
  return convert<T>(value, key);
}

ConfigSection ConfigSection::section(const std::string& key) const {
  YAML::Node value = child(key);
  if (!value.IsDefined() || value.IsNull())
    return ConfigSection(YAML::Node(YAML::NodeType::Map), key_path(key), consumed_);
  if (!value.IsMap())
    throw ConfigError(fmt::format("config key '{}': expected a mapping, got {}", key_path(key),
                                  describe(value)));
  return ConfigSection(value, key_path(key), consumed_);
}

std::vector<ConfigSection> ConfigSection::section_list(const std::string& key) const {
  YAML::Node value = child(key);
  std::vector<ConfigSection> out;
  if (!value.IsDefined() || value.IsNull()) return out;
  if (!value.IsSequence())
    throw ConfigError(fmt::format("config key '{}': expected a list, got {}", key_path(key),
                                  describe(value)));
  for (size_t i = 0; i < value.size(); ++i) {
    std::string item_path = key_path(key) + "." + std::to_string(i);
    if (!value[i].IsMap())
      throw ConfigError(fmt::format("config key '{}': expected a mapping, got {}", item_path,
                                    describe(value[i])));
    out.emplace_back(value[i], item_path, consumed_);
  }
  return out;
}

void ConfigSection::consume_subtree(const std::string& key) const {
  child(key);
  consumed_->insert(kSubtreeMark + key_path(key));
}

void ConfigSection::check(bool ok, const std::string& key, const std::string& message) const {
  if (!ok) throw ConfigError(fmt::format("config key '{}': {}", key_path(key), message));
}

std::string ConfigSection::get_choice(const std::string& key, const std::string& fallback,
                                      const std::vector<std::string>& allowed) const {
  std::string value = get<std::string>(key, fallback);
  if (std::find(allowed.begin(), allowed.end(), value) == allowed.end()) {
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    throw ConfigError(
        fmt::format("config key '{}': '{}' is not one of: {}", key_path(key), value, list));
  }
  return value;
}

#define DISTILLERY_CONFIG_TYPE(T)                                              \
  template T ConfigSection::get<T>(const std::string&, const T&) const;        \
  template T ConfigSection::require<T>(const std::string&) const;
DISTILLERY_CONFIG_TYPE(bool)
DISTILLERY_CONFIG_TYPE(int)
DISTILLERY_CONFIG_TYPE(int64_t)
DISTILLERY_CONFIG_TYPE(double)
DISTILLERY_CONFIG_TYPE(float)
DISTILLERY_CONFIG_TYPE(std::string)
DISTILLERY_CONFIG_TYPE(std::vector<int64_t>)
DISTILLERY_CONFIG_TYPE(std::vector<double>)
DISTILLERY_CONFIG_TYPE(std::vector<std::string>)
#undef DISTILLERY_CONFIG_TYPE

}  // namespace distillery

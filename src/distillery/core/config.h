// YAML configuration with strict validation: every key must be read by the code that owns
// it, so an unknown or misspelled key is an error instead of a silently ignored setting.
#pragma once
#include <yaml-cpp/yaml.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "distillery/core/error.h"

namespace distillery {

class ConfigSection;

// A parsed YAML document plus the record of which keys have been consumed.
class Config {
 public:
  static Config load_file(const std::string& path);
  static Config from_string(const std::string& yaml_text, const std::string& origin = "<string>");

  // "a.b.c=value": sets a (possibly new) nested key; value is parsed as YAML.
  void apply_override(const std::string& assignment);

  ConfigSection root();
  // Throws ConfigError naming the first key that no code read.
  void check_all_consumed() const;
  // The resolved document, for writing next to a run's outputs.
  std::string dump() const;
  const std::string& origin() const { return origin_; }
  YAML::Node node() const { return root_; }

 private:
  YAML::Node root_;
  std::string origin_;
  std::shared_ptr<std::set<std::string>> consumed_ = std::make_shared<std::set<std::string>>();
};

// A view of one mapping inside a Config. Reads record the key as consumed.
class ConfigSection {
 public:
  ConfigSection(YAML::Node node, std::string path, std::shared_ptr<std::set<std::string>> consumed);

  bool has(const std::string& key) const;
  template <typename T> T get(const std::string& key, const T& fallback) const;
  template <typename T> T require(const std::string& key) const;
  // Missing key -> empty section (all reads fall back to defaults).
  ConfigSection section(const std::string& key) const;
  // A list of mappings, e.g. `distillers: [{name: kd}, ...]`.
  std::vector<ConfigSection> section_list(const std::string& key) const;
  // Marks the whole subtree as consumed (for free-form blocks handed to another reader).
  void consume_subtree(const std::string& key) const;

  // Throws ConfigError("config key '<path>': <message>") when !ok.
  void check(bool ok, const std::string& key, const std::string& message) const;
  // One of the allowed values, else an error listing them.
  std::string get_choice(const std::string& key, const std::string& fallback,
                         const std::vector<std::string>& allowed) const;

  std::string key_path(const std::string& key) const;
  const std::string& path() const { return path_; }
  YAML::Node node() const { return node_; }

 private:
  YAML::Node child(const std::string& key) const;
  template <typename T> T convert(const YAML::Node& value, const std::string& key) const;

  YAML::Node node_;
  std::string path_;
  std::shared_ptr<std::set<std::string>> consumed_;
};

// Explicit instantiations live in config.cpp for: bool, int, int64_t, double, float,
// std::string, std::vector<int64_t>, std::vector<double>, std::vector<std::string>.

}  // namespace distillery

#include "distillery/train/pretrained.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <set>

#include "distillery/core/error.h"
#include "distillery/core/safetensors.h"

namespace distillery {
namespace {

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

std::vector<std::pair<std::string, torch::Tensor>> model_tensors(const torch::nn::Module& model) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& item : model.named_parameters()) out.emplace_back(item.key(), item.value());
  for (const auto& item : model.named_buffers()) out.emplace_back(item.key(), item.value());
  return out;
}

struct Assignment {
  torch::Tensor target;
  std::string target_name;
  std::vector<std::string> sources;
};

struct Plan {
  WeightNaming naming = WeightNaming::Distillery;
  std::string prefix;
  std::vector<Assignment> assignments;
  std::vector<std::string> missing, untouched;
};

Plan make_plan(const std::vector<std::pair<std::string, torch::Tensor>>& targets,
               const BackboneLocation& backbone, WeightNaming naming, const std::string& prefix,
               const std::map<std::string, torch::Tensor>& file) {
  Plan plan;
  plan.naming = naming;
  plan.prefix = prefix;
  for (const auto& [name, tensor] : targets) {
    const bool in_backbone =
        backbone.family != BackboneFamily::None && starts_with(name, backbone.prefix);
    std::vector<std::string> sources{name};
    if (naming != WeightNaming::Distillery && in_backbone) {
      auto external = external_names(backbone.family, naming, name.substr(backbone.prefix.size()));
      sources.clear();
      if (external)
        for (const auto& e : *external) sources.push_back(prefix + e);
    }
    bool present = !sources.empty();
    for (const auto& s : sources) present = present && file.count(s) > 0;
    if (present)
      plan.assignments.push_back({tensor, name, sources});
    else if (naming == WeightNaming::Distillery || in_backbone)
      plan.missing.push_back(name);
    else
      plan.untouched.push_back(name);
  }
  return plan;
}

std::string first_names(const std::vector<std::string>& names, size_t count = 4) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < count; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > count) out += fmt::format(", ... ({} more)", names.size() - count);
  return out;
}

}  // namespace

std::string PretrainedReport::summary() const {
  std::string line = fmt::format("loaded {} tensors ({} names{})", loaded.size(), naming_name(naming),
                                 prefix.empty() ? "" : fmt::format(" under '{}'", prefix));
  if (!missing.empty()) line += fmt::format("; {} missing: {}", missing.size(), first_names(missing));
  if (!unexpected.empty())
    line += fmt::format("; {} unexpected: {}", unexpected.size(), first_names(unexpected));
  return line;
}

PretrainedReport load_state_dict(torch::nn::Module& model,
                                 const std::map<std::string, torch::Tensor>& tensors,
                                 const std::string& origin) {
  const auto targets = model_tensors(model);
  const BackboneLocation backbone = locate_backbone(model);
  // Distillery's own names first: on a tie they win.
  Plan best = make_plan(targets, backbone, WeightNaming::Distillery, "", tensors);
  for (WeightNaming naming : namings_for(backbone.family))
    for (const std::string& prefix : external_prefixes(naming)) {
      Plan plan = make_plan(targets, backbone, naming, prefix, tensors);
      if (plan.assignments.size() > best.assignments.size()) best = std::move(plan);
    }
  if (best.assignments.empty()) {
    std::vector<std::string> file_names;
    for (const auto& item : tensors) file_names.push_back(item.first);
    std::string layouts = "distillery";
    for (WeightNaming n : namings_for(backbone.family)) layouts += ", " + naming_name(n);
    throw Error(fmt::format("weights '{}': no tensor matches the model under any known naming ({}); "
                            "the file has: {}", origin, layouts, first_names(file_names)));
  }

  // Check every tensor before copying any.
  std::vector<torch::Tensor> sources;
  std::vector<std::string> mismatches;
  for (const auto& a : best.assignments) {
    std::vector<torch::Tensor> parts;
    for (const auto& s : a.sources) parts.push_back(tensors.at(s));
    bool parts_ok = true;
    for (const auto& p : parts) parts_ok = parts_ok && p.dim() == parts[0].dim() && p.dim() > 0;
    torch::Tensor source = parts.size() == 1 ? parts[0] : (parts_ok ? torch::cat(parts, 0) : torch::Tensor());
    std::string file_names = first_names(a.sources);
    if (!source.defined() || source.sizes() != a.target.sizes()) {
      mismatches.push_back(fmt::format("'{}' [{}] vs model '{}' [{}]", file_names,
                                       source.defined() ? fmt::format("{}", fmt::join(source.sizes(), ", ")) : "?",
                                       a.target_name, fmt::join(a.target.sizes(), ", ")));
      continue;
    }
    const bool target_float = a.target.is_floating_point(), source_float = source.is_floating_point();
    if (target_float != source_float || source.scalar_type() == torch::kBool) {
      mismatches.push_back(fmt::format("'{}' has dtype {}, model '{}' needs {}", file_names,
                                       c10::toString(source.scalar_type()), a.target_name,
                                       c10::toString(a.target.scalar_type())));
      continue;
    }
    sources.push_back(source.to(a.target.scalar_type()));
  }
  if (!mismatches.empty())
    throw Error(fmt::format("weights '{}' ({} names): {} shape/dtype mismatch(es), nothing loaded: {}{} "
                            "(a Distillery preset differs in width, stem, input channels or classes; "
                            "see docs/interop.md)",
                            origin, naming_name(best.naming), mismatches.size(), mismatches[0],
                            mismatches.size() > 1 ? fmt::format("; {}", mismatches[1]) : ""));

  PretrainedReport report;
  report.naming = best.naming;
  report.prefix = best.prefix;
  report.missing = best.missing;
  std::set<std::string> used;
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < best.assignments.size(); ++i) {
      best.assignments[i].target.copy_(sources[i]);
      report.loaded.push_back(best.assignments[i].target_name);
      for (const auto& s : best.assignments[i].sources) used.insert(s);
    }
  }
  for (const auto& item : tensors)
    if (!used.count(item.first)) report.unexpected.push_back(item.first);
  return report;
}

PretrainedReport load_pretrained(torch::nn::Module& model, const std::string& safetensors_path) {
  SafetensorsFile file = read_safetensors(safetensors_path);
  return load_state_dict(model, file.tensors, safetensors_path);
}

std::map<std::string, torch::Tensor> export_state_dict(const torch::nn::Module& model,
                                                       WeightNaming naming) {
  const BackboneLocation backbone = locate_backbone(model);
  if (naming != WeightNaming::Distillery) {
    auto allowed = namings_for(backbone.family);
    if (std::find(allowed.begin(), allowed.end(), naming) == allowed.end())
      throw Error(fmt::format("export: '{}' names do not apply to this model's backbone (it has {})",
                              naming_name(naming),
                              allowed.empty() ? std::string("none") : naming_name(allowed[0])));
  }
  std::map<std::string, torch::Tensor> out;
  auto put = [&](const std::string& name, const torch::Tensor& t) {
    if (!out.emplace(name, t.detach().clone()).second)
      throw Error(fmt::format("export: two tensors would both be named '{}'", name));
  };
  for (const auto& [name, tensor] : model_tensors(model)) {
    const bool in_backbone =
        backbone.family != BackboneFamily::None && starts_with(name, backbone.prefix);
    if (naming == WeightNaming::Distillery || !in_backbone) {
      put(name, tensor);
      continue;
    }
    auto external = external_names(backbone.family, naming, name.substr(backbone.prefix.size()));
    if (!external) {
      put(name, tensor);  // no counterpart in that layout: keep Distillery's name
      continue;
    }
    if (external->size() == 1) {
      put(export_prefix(naming) + external->front(), tensor);
      continue;
    }
    const auto parts = tensor.chunk(static_cast<int64_t>(external->size()), 0);
    for (size_t i = 0; i < external->size(); ++i) put(export_prefix(naming) + (*external)[i], parts[i]);
  }
  return out;
}

}  // namespace distillery

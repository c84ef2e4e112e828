#include "distillery/models/weight_names.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <cstdlib>
#include <regex>

namespace distillery {
namespace {

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// Distillery's ResNet differs from torchvision's only in the stem: a Sequential
// (conv, bn, relu[, maxpool]) where torchvision has conv1 / bn1 attributes.
std::optional<std::vector<std::string>> resnet_torchvision(const std::string& name) {
  if (starts_with(name, "stem.0.")) return std::vector<std::string>{"conv1." + name.substr(7)};
  if (starts_with(name, "stem.1.")) return std::vector<std::string>{"bn1." + name.substr(7)};
  if (starts_with(name, "layer")) return std::vector<std::string>{name};
  return std::nullopt;
}

// Distillery's MobileNetV2 regroups torchvision's flat `features` list into four stage
// Sequentials: stage1 = stem conv, bn, relu6 + features.1-3; stage2 = features.4-6; stage3 =
// features.7-13; stage4 = features.14-17 (+ the final 1x1 conv-bn at positions 4, 5 =
// features.18.0/1 when built with last_channels). Inside an inverted residual, Distillery's
// flat `body` (conv, bn, relu6, ...) maps onto torchvision's nested `conv` list.
std::optional<std::vector<std::string>> mobilenetv2_torchvision(const std::string& name) {
  static const std::regex pattern(R"(stage([1-4])\.(\d+)\.(.*))");
  std::smatch m;
  if (!std::regex_match(name, m, pattern)) return std::nullopt;
  const int stage = std::stoi(m[1]);
  const int index = std::stoi(m[2]);
  const std::string rest = m[3];
  int feature = -1;
  switch (stage) {
    case 1:
      if (index <= 1) return std::vector<std::string>{fmt::format("features.0.{}.{}", index, rest)};
      if (index >= 3 && index <= 5) feature = index - 2;
      break;
    case 2: if (index <= 2) feature = 4 + index; break;
    case 3: if (index <= 6) feature = 7 + index; break;
    case 4:
      if (index <= 3) feature = 14 + index;
      if (index == 4 || index == 5) return std::vector<std::string>{fmt::format("features.18.{}.{}", index - 4, rest)};
      break;
  }
  if (feature < 0) return std::nullopt;
  static const std::regex body(R"(body\.(\d+)\.(.*))");
  std::smatch b;
  if (!std::regex_match(rest, b, body)) return std::nullopt;
  const int layer = std::stoi(b[1]);
  const std::string leaf = b[2];
  // features.1 has expand ratio 1: no expansion conv, so its body is dw conv, bn, relu6, pw, bn.
  const char* const expand1[] = {"conv.0.0", "conv.0.1", nullptr, "conv.1", "conv.2"};
  const char* const expand6[] = {"conv.0.0", "conv.0.1", nullptr, "conv.1.0", "conv.1.1", nullptr, "conv.2", "conv.3"};
  const char* target = nullptr;
  if (feature == 1 && layer < 5) target = expand1[layer];
  if (feature != 1 && layer < 8) target = expand6[layer];
  if (!target) return std::nullopt;
  return std::vector<std::string>{fmt::format("features.{}.{}.{}", feature, target, leaf)};
}

// The reference MiT differs in two names: the spatial-reduction LayerNorm is `attn.norm`, and
// the depthwise conv sits inside a DWConv wrapper (`mlp.dwconv.dwconv`).
std::optional<std::vector<std::string>> mit_reference(const std::string& name) {
  static const std::regex sr_norm(R"((block\d+\.\d+\.attn\.)sr_norm\.(.*))");
  static const std::regex dwconv(R"((block\d+\.\d+\.mlp\.)dwconv\.(.*))");
  std::smatch m;
  if (std::regex_match(name, m, sr_norm)) return std::vector<std::string>{m.str(1) + "norm." + m.str(2)};
  if (std::regex_match(name, m, dwconv)) return std::vector<std::string>{m.str(1) + "dwconv.dwconv." + m.str(2)};
  if (starts_with(name, "patch_embed") || starts_with(name, "block") || starts_with(name, "norm"))
    return std::vector<std::string>{name};
  return std::nullopt;
}

// transformers' SegformerEncoder: zero-based ModuleLists and separate key / value Linears.
std::optional<std::vector<std::string>> mit_huggingface(const std::string& name) {
  std::smatch m;
  static const std::regex patch(R"(patch_embed([1-4])\.(proj|norm)\.(.*))");
  if (std::regex_match(name, m, patch)) {
    const int s = std::stoi(m[1]) - 1;
    return std::vector<std::string>{
        fmt::format("patch_embeddings.{}.{}.{}", s, m.str(2) == "proj" ? "proj" : "layer_norm", m.str(3))};
  }
  static const std::regex stage_norm(R"(norm([1-4])\.(.*))");
  if (std::regex_match(name, m, stage_norm))
    return std::vector<std::string>{fmt::format("layer_norm.{}.{}", std::stoi(m[1]) - 1, m.str(2))};
  static const std::regex block(R"(block([1-4])\.(\d+)\.(.*))");
  if (!std::regex_match(name, m, block)) return std::nullopt;
  const std::string base = fmt::format("block.{}.{}.", std::stoi(m[1]) - 1, m.str(2));
  const std::string rest = m[3];
  static const std::vector<std::pair<std::string, std::string>> renames = {
      {"norm1.", "layer_norm_1."},           {"norm2.", "layer_norm_2."},
      {"attn.q.", "attention.self.query."},  {"attn.sr.", "attention.self.sr."},
      {"attn.sr_norm.", "attention.self.layer_norm."},
      {"attn.proj.", "attention.output.dense."},
      {"mlp.fc1.", "mlp.dense1."},           {"mlp.dwconv.", "mlp.dwconv.dwconv."},
      {"mlp.fc2.", "mlp.dense2."}};
  if (starts_with(rest, "attn.kv.")) {
    const std::string leaf = rest.substr(8);
    return std::vector<std::string>{base + "attention.self.key." + leaf,
                                    base + "attention.self.value." + leaf};
  }
  for (const auto& [from, to] : renames)
    if (starts_with(rest, from)) return std::vector<std::string>{base + to + rest.substr(from.size())};
  return std::nullopt;
}

}  // namespace

std::string naming_name(WeightNaming naming) {
  switch (naming) {
    case WeightNaming::Distillery: return "distillery";
    case WeightNaming::Torchvision: return "torchvision";
    case WeightNaming::MiT: return "mit";
    case WeightNaming::HuggingFace: return "hf";
  }
  return "?";
}

std::optional<WeightNaming> parse_naming(const std::string& name) {
  for (auto n : {WeightNaming::Distillery, WeightNaming::Torchvision, WeightNaming::MiT,
                 WeightNaming::HuggingFace})
    if (naming_name(n) == name) return n;
  return std::nullopt;
}

BackboneLocation locate_backbone(const torch::nn::Module& model) {
  BackboneLocation location;
  for (const auto& item : model.named_parameters()) {
    const std::string& key = item.key();
    const std::pair<const char*, BackboneFamily> markers[] = {
        {"stem.0.weight", BackboneFamily::ResNet},
        {"stage1.0.weight", BackboneFamily::MobileNetV2},
        {"patch_embed1.proj.weight", BackboneFamily::MiT}};
    for (const auto& [marker, family] : markers) {
      const std::string suffix = marker;
      if (key.size() >= suffix.size() && key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0) {
        location.family = family;
        location.prefix = key.substr(0, key.size() - suffix.size());
        return location;
      }
    }
  }
  return location;
}

std::vector<WeightNaming> namings_for(BackboneFamily family) {
  switch (family) {
    case BackboneFamily::ResNet:
    case BackboneFamily::MobileNetV2: return {WeightNaming::Torchvision};
    case BackboneFamily::MiT: return {WeightNaming::MiT, WeightNaming::HuggingFace};
    case BackboneFamily::None: break;
  }
  return {};
}

std::optional<std::vector<std::string>> external_names(BackboneFamily family, WeightNaming naming,
                                                       const std::string& name) {
  if (naming == WeightNaming::Distillery) return std::vector<std::string>{name};
  if (family == BackboneFamily::ResNet && naming == WeightNaming::Torchvision) return resnet_torchvision(name);
  if (family == BackboneFamily::MobileNetV2 && naming == WeightNaming::Torchvision)
    return mobilenetv2_torchvision(name);
  if (family == BackboneFamily::MiT && naming == WeightNaming::MiT) return mit_reference(name);
  if (family == BackboneFamily::MiT && naming == WeightNaming::HuggingFace) return mit_huggingface(name);
  return std::nullopt;
}

std::vector<std::string> external_prefixes(WeightNaming naming) {
  if (naming == WeightNaming::HuggingFace) return {"", "segformer.encoder.", "encoder.", "model.encoder."};
  return {"", "backbone.", "module.", "module.backbone.", "model.", "encoder."};
}

std::string export_prefix(WeightNaming naming) {
  return naming == WeightNaming::HuggingFace ? "segformer.encoder." : "backbone.";
}

}  // namespace distillery

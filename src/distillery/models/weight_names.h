// Name maps between Distillery's parameter names and the state-dict layouts PyTorch users have:
// torchvision ResNet / MobileNetV2, the SegFormer reference MiT (NVlabs / mmseg, also timm-style
// `mit_b*` checkpoints) and Hugging Face `transformers` Segformer. A map is a function from one
// Distillery name (relative to the backbone) to its external name(s); loading and exporting
// both use it, so the two directions cannot disagree.
#pragma once
#include <torch/nn/module.h>

#include <optional>
#include <string>
#include <vector>

namespace distillery {

enum class BackboneFamily { None, ResNet, MobileNetV2, MiT };

enum class WeightNaming {
  Distillery,   // the module tree's own names (what `named_parameters()` prints)
  Torchvision,  // ResNet: conv1/bn1/layerN...; MobileNetV2: features.N...
  MiT,          // SegFormer reference: patch_embedN, blockN.i.attn.{q,kv,proj,sr,norm}, normN
  HuggingFace,  // transformers Segformer: patch_embeddings.N, block.N.i.attention.self.{query,key,value}
};

std::string naming_name(WeightNaming naming);
// "distillery", "torchvision", "mit", "hf"; nullopt for anything else.
std::optional<WeightNaming> parse_naming(const std::string& name);

// Where a model's backbone lives: the module prefix ("backbone.", "encoder.") and its family,
// recognised from the names of its parameters. Family None: no external naming applies.
struct BackboneLocation {
  BackboneFamily family = BackboneFamily::None;
  std::string prefix;
};
BackboneLocation locate_backbone(const torch::nn::Module& model);

// The namings that apply to a family (besides Distillery's own).
std::vector<WeightNaming> namings_for(BackboneFamily family);

// The external name(s) of one backbone tensor, `name` relative to the backbone prefix. Several
// names mean the tensor is their concatenation along dim 0 (HF stores MiT's kv as key, value).
// nullopt: the tensor has no counterpart in that layout.
std::optional<std::vector<std::string>> external_names(BackboneFamily family, WeightNaming naming,
                                                       const std::string& name);

// Prefixes under which external layouts put the backbone, tried in this order when loading
// ("" first: a bare backbone state dict).
std::vector<std::string> external_prefixes(WeightNaming naming);
// The prefix written on export.
std::string export_prefix(WeightNaming naming);

}  // namespace distillery

// Initialising a model from, and exporting it to, safetensors state dicts with the name maps of
// models/weight_names.h.
#pragma once
#include <torch/nn/module.h>
#include <torch/types.h>

#include <map>
#include <string>
#include <vector>

#include "distillery/models/weight_names.h"

namespace distillery {

struct PretrainedReport {
  WeightNaming naming = WeightNaming::Distillery;  // the layout recognised in the file
  std::string prefix;                              // its backbone prefix ("backbone.", ...)
  std::vector<std::string> loaded;      // Distillery names that received a tensor
  std::vector<std::string> missing;     // Distillery names the file does not provide
  std::vector<std::string> unexpected;  // file names nothing used (e.g. a classifier head)
  std::string summary() const;          // one line with counts and the first few names
};

// Chooses the layout (Distillery's own names, or one of the backbone's external namings under
// any of its usual prefixes) that matches the most tensors, then copies them. Non-backbone
// tensors load when the file has them under Distillery's names. Everything is checked before
// anything is copied: a shape mismatch throws Error naming the tensors and both shapes, as does
// a file with no tensor the model can use. Floating tensors are converted to the model's dtype.
PretrainedReport load_state_dict(torch::nn::Module& model,
                                 const std::map<std::string, torch::Tensor>& tensors,
                                 const std::string& origin);
PretrainedReport load_pretrained(torch::nn::Module& model, const std::string& safetensors_path);

// The model's parameters and buffers; with an external naming, backbone tensors get that
// layout's names under export_prefix(naming) (HF kv is split into key and value) and the rest
// keep Distillery's names. Error when the naming does not apply to the model's backbone.
std::map<std::string, torch::Tensor> export_state_dict(const torch::nn::Module& model,
                                                       WeightNaming naming);

}  // namespace distillery

#include "distillery/distill/distiller.h"

namespace distillery {

void LossTerms::add(const std::string& name, const torch::Tensor& value) {
  auto it = terms.find(name);
  if (it == terms.end()) {
    terms.emplace(name, value);
  } else {
    it->second = it->second + value;
  }
}

torch::Tensor LossTerms::total() const {
  torch::Tensor sum;
  for (const auto& [name, value] : terms) sum = sum.defined() ? sum + value : value;
  return sum.defined() ? sum : torch::zeros({});
}

}  // namespace distillery

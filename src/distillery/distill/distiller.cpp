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

TeacherReads TeacherReads::everything() {
  TeacherReads all;
  all.logits = all.aux_logits = all.embedding = all.all_stages = true;
  return all;
}

TeacherReads TeacherReads::logits_only() {
  TeacherReads reads;
  reads.logits = true;
  return reads;
}

void TeacherReads::merge(const TeacherReads& other) {
  logits |= other.logits;
  aux_logits |= other.aux_logits;
  embedding |= other.embedding;
  all_stages |= other.all_stages;
  stages.insert(other.stages.begin(), other.stages.end());
}

}  // namespace distillery

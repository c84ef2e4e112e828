// OFA (Hao et al., NeurIPS 2023): branches project chosen intermediate student stages to class
// logits; each branch and the final logits learn from the target -sum_c ((p_t + y)^eps - y)
// log p_s (y the one-hot label; eps = 1 gives plain KD). Segmentation: per valid pixel, with
// the teacher's logits and the labels resized to each branch's resolution. Classification:
// per image, each branch's map globally average-pooled to logits (OFA's branch ends in
// pooling + a linear classifier; the 1x1 conv before the pooling is that linear map).
// The terms are summed.
#include <torch/torch.h>

#include <fmt/format.h>

#include "distillery/distill/components/losses.h"
#include "distillery/distill/components/projector.h"
#include "distillery/distill/components/tap.h"
#include "distillery/distill/distiller.h"

namespace distillery {
namespace {

// All intermediate stages but the deepest, at most the two deepest of them.
std::vector<int64_t> default_branch_stages(int64_t num_stages) {
  if (num_stages >= 3) return {-3, -2};
  if (num_stages == 2) return {-2};
  return {};
}

class OfaImpl : public DistillerImpl {
 public:
  OfaImpl(const DistillerContext& context, const ConfigSection& params)
      : eps_(params.get<double>("eps", 1.0)), temperature_(params.get<double>("temperature", 1.0)) {
    params.check(eps_ > 0, "eps", "must be positive (OFA uses 1 to 1.5)");
    params.check(temperature_ > 0, "temperature", "must be positive");
    const auto num_stages = static_cast<int64_t>(context.student_stages.size());
    const auto kind = read_projector_kind(params, "projector", "conv_bn_relu");
    for (auto index : params.get<std::vector<int64_t>>("stages", default_branch_stages(num_stages))) {
      const auto stage = resolve_stage_index(params, "stages", index, num_stages);
      stages_.push_back(stage);
      branches_.push_back(register_module(
          fmt::format("branch{}", branches_.size()),
          make_projector(context.student_stages[stage].channels, context.num_classes, kind)));
    }
  }

  LossTerms forward(const ModelOutput& student, const ModelOutput& teacher, const Batch& batch,
                    const StepInfo&) override {
    // Classification logits and labels become 1x1 maps, so one per-pixel formula serves both.
    const bool per_image = student.logits.dim() == 2;
    auto teacher_logits = as_pixel_map(teacher.logits.detach());
    auto targets = as_pixel_labels(batch.targets);
    auto loss = ofa_term(as_pixel_map(student.logits), teacher_logits, targets);
    for (size_t i = 0; i < branches_.size(); ++i) {
      auto branch_logits = branches_[i]->forward(FeatureTap::features(stages_[i]).read(student));
      if (per_image) branch_logits = global_pool(branch_logits);
      loss = loss + ofa_term(branch_logits, teacher_logits, targets);
    }
    LossTerms out;
    out.add("ofa", loss);
    return out;
  }

  TeacherReads teacher_reads() const override { return TeacherReads::logits_only(); }

 private:
  torch::Tensor ofa_term(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                         const torch::Tensor& targets) const {
    const std::vector<int64_t> size{student_logits.size(2), student_logits.size(3)};
    auto labels = resize_labels(targets, size);
    auto valid = labels != kIgnoreLabel;
    auto one_hot = torch::one_hot(labels.masked_fill(valid.logical_not(), 0), student_logits.size(1))
                       .permute({0, 3, 1, 2})
                       .to(student_logits.scalar_type());
    auto p_t = torch::softmax(resize_to(teacher_logits, size) / temperature_, 1);
    auto target = (p_t + one_hot).pow(eps_) - one_hot;
    auto per_pixel = -(target * torch::log_softmax(student_logits / temperature_, 1)).sum(1);
    return masked_mean(per_pixel, valid);
  }

  double eps_, temperature_;
  std::vector<int64_t> stages_;
  std::vector<torch::nn::Sequential> branches_;
};

}  // namespace

Distiller make_ofa_distiller(const DistillerContext& context, const ConfigSection& params) {
  return std::make_shared<OfaImpl>(context, params);
}

}  // namespace distillery

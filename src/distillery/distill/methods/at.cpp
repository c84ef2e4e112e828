// Attention transfer: a = normalise(mean_c F^p) per image; beta * sum over stage pairs of
// mean (a_s - a_t)^2, the teacher's map resized to the student's resolution first.
// Not masked by the ignore label: each map is normalised over the whole image.
#include <torch/torch.h>

#include "distillery/distill/components/losses.h"
#include "distillery/distill/components/tap.h"
#include "distillery/distill/distiller.h"

namespace distillery {
namespace {

class AttentionTransferImpl : public DistillerImpl {
 public:
  AttentionTransferImpl(const DistillerContext& context, const ConfigSection& params)
      : student_stages_(read_stage_indices(params, "student_stages", {-2, -1},
                                           static_cast<int64_t>(context.student_stages.size()))),
        teacher_stages_(read_stage_indices(params, "teacher_stages", {-2, -1},
                                           static_cast<int64_t>(context.teacher_stages.size()))),
        beta_(params.get<double>("beta", 1000.0)),
        exponent_(params.get<double>("exponent", 2.0)) {
    params.check(student_stages_.size() == teacher_stages_.size(), "teacher_stages",
                 "must list as many stages as student_stages");
    params.check(beta_ >= 0, "beta", "must be >= 0");
    params.check(exponent_ > 0, "exponent", "must be positive");
  }

  LossTerms forward(const ModelOutput& student, const ModelOutput& teacher, const Batch&,
                    const StepInfo&) override {
    torch::Tensor loss;
    for (size_t i = 0; i < student_stages_.size(); ++i) {
      auto a_s = attention_map(FeatureTap::features(student_stages_[i]).read(student), exponent_);
      auto a_t = attention_map(FeatureTap::features(teacher_stages_[i]).read(teacher).detach(), exponent_);
      a_t = resize_to(a_t, {a_s.size(2), a_s.size(3)});
      auto term = (normalised_flat(a_s) - normalised_flat(a_t)).pow(2).mean();
      loss = loss.defined() ? loss + term : term;
    }
    LossTerms out;
    out.add("at", beta_ * loss);
    return out;
  }

  TeacherReads teacher_reads() const override {
    TeacherReads reads;
    reads.stages.insert(teacher_stages_.begin(), teacher_stages_.end());
    return reads;
  }

 private:
  std::vector<int64_t> student_stages_, teacher_stages_;
  double beta_, exponent_;
};

}  // namespace

Distiller make_at_distiller(const DistillerContext& context, const ConfigSection& params) {
  return std::make_shared<AttentionTransferImpl>(context, params);
}

}  // namespace distillery

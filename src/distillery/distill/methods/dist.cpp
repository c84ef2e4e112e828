// DIST: relations instead of exact matches. Per-pixel p = softmax(z/T); beta * inter-class
// (1 - Pearson over classes, per pixel) + gamma * intra-class (1 - Pearson over the batch's
// valid pixels, per class), each times T^2 as in the DIST code.
#include <torch/torch.h>

#include "distillery/distill/components/losses.h"
#include "distillery/distill/distiller.h"

namespace distillery {
namespace {

class DistImpl : public DistillerImpl {
 public:
  DistImpl(const DistillerContext&, const ConfigSection& params)
      : beta_(params.get<double>("beta", 1.0)),
        gamma_(params.get<double>("gamma", 1.0)),
        temperature_(params.get<double>("temperature", 1.0)) {
    params.check(beta_ >= 0, "beta", "must be >= 0");
    params.check(gamma_ >= 0, "gamma", "must be >= 0");
    params.check(temperature_ > 0, "temperature", "must be positive");
  }

  LossTerms forward(const ModelOutput& student, const ModelOutput& teacher, const Batch& batch,
                    const StepInfo&) override {
    auto s = as_pixel_map(student.logits);
    auto t = resize_to(as_pixel_map(teacher.logits).detach(), {s.size(2), s.size(3)});
    auto terms = dist_relations(s, t, temperature_, batch_valid_mask(batch.targets, {s.size(2), s.size(3)}));
    LossTerms out;
    out.add("dist", beta_ * terms.inter + gamma_ * terms.intra);
    return out;
  }

  TeacherReads teacher_reads() const override { return TeacherReads::logits_only(); }

 private:
  double beta_, gamma_, temperature_;
};

}  // namespace

Distiller make_dist_distiller(const DistillerContext& context, const ConfigSection& params) {
  return std::make_shared<DistImpl>(context, params);
}

}  // namespace distillery

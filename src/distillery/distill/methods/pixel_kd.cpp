// Pixel KD: T^2 * mean over valid pixels of KL(p_t || p_s), the teacher's logits resized
// bilinearly to the student's. Classification logits [B, C] are one "pixel" per image.
#include <torch/torch.h>

#include "distillery/distill/components/losses.h"
#include "distillery/distill/distiller.h"

namespace distillery {
namespace {

class PixelKdImpl : public DistillerImpl {
 public:
  PixelKdImpl(const DistillerContext& context, const ConfigSection& params)
      // CIRKD's segmentation recipe uses T = 1; the classification recipes use T = 4.
      : temperature_(params.get<double>("temperature", context.task == Task::Classification ? 4.0 : 1.0)) {
    params.check(temperature_ > 0, "temperature", "must be positive");
  }

  LossTerms forward(const ModelOutput& student, const ModelOutput& teacher, const Batch& batch,
                    const StepInfo&) override {
    auto s = as_pixel_map(student.logits);
    auto t = resize_to(as_pixel_map(teacher.logits).detach(), {s.size(2), s.size(3)});
    auto mask = batch_valid_mask(batch.targets, {s.size(2), s.size(3)});
    LossTerms out;
    out.add("kd", pixel_kl(s, t, temperature_, mask));
    return out;
  }

  TeacherReads teacher_reads() const override { return TeacherReads::logits_only(); }

 private:
  double temperature_;
};

}  // namespace

Distiller make_kd_distiller(const DistillerContext& context, const ConfigSection& params) {
  return std::make_shared<PixelKdImpl>(context, params);
}

}  // namespace distillery

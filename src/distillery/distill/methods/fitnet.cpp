// FitNet hints: a 1x1 conv regressor from a student stage to the teacher stage's channels;
// MSE against the teacher's map resized to the student's resolution, mean over channels and
// valid pixels.
#include <torch/torch.h>

#include "distillery/distill/components/losses.h"
#include "distillery/distill/components/projector.h"
#include "distillery/distill/components/tap.h"
#include "distillery/distill/distiller.h"

namespace distillery {
namespace {

class FitNetImpl : public DistillerImpl {
 public:
  FitNetImpl(const DistillerContext& context, const ConfigSection& params)
      : mask_ignore_(params.get<bool>("mask_ignore", true)) {
    const auto taps = read_stage_pair(params, context.student_stages, context.teacher_stages);
    student_tap_ = taps.student;
    teacher_tap_ = taps.teacher;
    regressor_ = register_module(
        "regressor", make_aligner(student_tap_.channels(context.student_stages, context.num_classes),
                                  teacher_tap_.channels(context.teacher_stages, context.num_classes)));
  }

  LossTerms forward(const ModelOutput& student, const ModelOutput& teacher, const Batch& batch,
                    const StepInfo&) override {
    auto s = regressor_->forward(student_tap_.read(student));
    auto t = resize_to(teacher_tap_.read(teacher).detach(), {s.size(2), s.size(3)});
    auto per_pixel = (s - t).pow(2).mean(1);
    auto mask = mask_ignore_ ? batch_valid_mask(batch.targets, {s.size(2), s.size(3)}) : torch::Tensor();
    LossTerms out;
    out.add("fitnet", masked_mean(per_pixel, mask));
    return out;
  }

  torch::nn::Sequential regressor() const { return regressor_; }

  TeacherReads teacher_reads() const override {
    TeacherReads reads;
    teacher_tap_.add_to(reads);
    return reads;
  }

 private:
  FeatureTap student_tap_, teacher_tap_;
  bool mask_ignore_;
  torch::nn::Sequential regressor_{nullptr};
};

}  // namespace

Distiller make_fitnet_distiller(const DistillerContext& context, const ConfigSection& params) {
  return std::make_shared<FitNetImpl>(context, params);
}

}  // namespace distillery

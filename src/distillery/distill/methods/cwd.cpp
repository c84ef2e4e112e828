// CWD (channel-wise distillation): per channel, a softmax over the spatial positions of z/T;
// T^2 * sum_c KL(teacher || student) / (C * B). On logits by default, or on a stage's
// features after a 1x1 conv aligner from the student's to the teacher's channels.
#include <torch/torch.h>

#include "distillery/distill/components/losses.h"
#include "distillery/distill/components/projector.h"
#include "distillery/distill/components/tap.h"
#include "distillery/distill/distiller.h"

namespace distillery {
namespace {

class CwdImpl : public DistillerImpl {
 public:
  CwdImpl(const DistillerContext& context, const ConfigSection& params)
      : student_tap_(FeatureTap::parse(params, context.student_stages, "logits", -1)),
        temperature_(params.get<double>("temperature", 4.0)),
        mask_ignore_(params.get<bool>("mask_ignore", true)) {
    teacher_tap_ = student_tap_;
    if (student_tap_.kind == FeatureTap::Kind::Features) {
      const auto index = params.get<int64_t>("teacher_stage", params.get<int64_t>("stage", -1));
      teacher_tap_ = FeatureTap::features(resolve_stage_index(
          params, "teacher_stage", index, static_cast<int64_t>(context.teacher_stages.size())));
      aligner_ = register_module(
          "aligner", make_aligner(student_tap_.channels(context.student_stages, context.num_classes),
                                  teacher_tap_.channels(context.teacher_stages, context.num_classes)));
    }
    // CIRKD's recipe: weight 3 on logits, 50 on aligned features.
    loss_weight_ = params.get<double>("loss_weight", aligner_ ? 50.0 : 3.0);
    params.check(temperature_ > 0, "temperature", "must be positive");
    params.check(loss_weight_ >= 0, "loss_weight", "must be >= 0");
  }

  LossTerms forward(const ModelOutput& student, const ModelOutput& teacher, const Batch& batch,
                    const StepInfo&) override {
    auto s = as_pixel_map(student_tap_.read(student));
    if (aligner_) s = aligner_->forward(s);
    auto t = resize_to(as_pixel_map(teacher_tap_.read(teacher)).detach(), {s.size(2), s.size(3)});
    auto mask = mask_ignore_ ? batch_valid_mask(batch.targets, {s.size(2), s.size(3)}) : torch::Tensor();
    LossTerms out;
    out.add("cwd", loss_weight_ * channel_kl(s, t, temperature_, mask));
    return out;
  }

  TeacherReads teacher_reads() const override {
    TeacherReads reads;
    teacher_tap_.add_to(reads);
    return reads;
  }

 private:
  FeatureTap student_tap_;
  FeatureTap teacher_tap_;
  double temperature_;
  bool mask_ignore_;
  double loss_weight_ = 3.0;
  torch::nn::Sequential aligner_{nullptr};
};

}  // namespace

Distiller make_cwd_distiller(const DistillerContext& context, const ConfigSection& params) {
  return std::make_shared<CwdImpl>(context, params);
}

}  // namespace distillery

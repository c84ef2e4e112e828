// Structured KD, pairwise term: both feature maps pooled to a grid x grid map, then the
// cosine similarity between every pair of positions; MSE between the two matrices. With
// 64x64 inputs the deep stages are 8x8 or 16x16, so the default 4x4 grid keeps 16 regions.
// Not masked by the ignore label: pooled regions mix pixels.
#include <torch/torch.h>

#include "distillery/distill/components/losses.h"
#include "distillery/distill/components/tap.h"
#include "distillery/distill/distiller.h"

namespace distillery {
namespace {

class StructuredKdImpl : public DistillerImpl {
 public:
  StructuredKdImpl(const DistillerContext& context, const ConfigSection& params)
      : grid_(params.get<int64_t>("grid", 4)),
        // CIRKD pools with max pooling before the pairwise term.
        max_pool_(params.get_choice("pool", "max", {"max", "avg"}) == "max") {
    const auto taps = read_stage_pair(params, context.student_stages, context.teacher_stages);
    student_tap_ = taps.student;
    teacher_tap_ = taps.teacher;
    params.check(grid_ >= 1, "grid", "must be >= 1");
  }

  LossTerms forward(const ModelOutput& student, const ModelOutput& teacher, const Batch&,
                    const StepInfo&) override {
    auto sim_s = cosine_similarity_matrix(pool_to_grid(student_tap_.read(student), grid_, max_pool_));
    auto sim_t = cosine_similarity_matrix(pool_to_grid(teacher_tap_.read(teacher).detach(), grid_, max_pool_));
    LossTerms out;
    out.add("skd", (sim_s - sim_t).pow(2).mean());
    return out;
  }

  TeacherReads teacher_reads() const override {
    TeacherReads reads;
    teacher_tap_.add_to(reads);
    return reads;
  }

 private:
  FeatureTap student_tap_, teacher_tap_;
  int64_t grid_;
  bool max_pool_;
};

}  // namespace

Distiller make_skd_distiller(const DistillerContext& context, const ConfigSection& params) {
  return std::make_shared<StructuredKdImpl>(context, params);
}

}  // namespace distillery

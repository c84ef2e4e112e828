// CRD, contrastive representation distillation (Tian et al., ICLR 2020; mdistiller's recipe).
// Student and teacher embeddings are mapped by linear heads to a common width and
// L2-normalised; two memory banks, one row per training sample (Batch.index), hold
// momentum-averaged normalised embeddings of each side. For every sample, its own row of the
// other side's bank is the positive and K rows drawn uniformly are negatives; scores
// exp(<memory row, embedding> / T) / Z (Z fixed from the first batch as mean score * N) feed the
// NCE loss h = P / (P + K/N). Loss = NCE(student anchor, teacher bank) + NCE(teacher anchor,
// student bank). The banks are buffers, so checkpoints carry them.
#pragma once
#include <torch/nn/modules/linear.h>
#include <torch/types.h>

#include "distillery/distill/distiller.h"

namespace distillery {

struct CrdOptions {
  int64_t feat_dim = 128;
  int64_t negatives = 16384;   // K (nce_k)
  double temperature = 0.07;   // nce_t
  double momentum = 0.5;       // nce_m, memory update
};

// The NCE loss of one side: scores [B, K + 1] (column 0 the positive), N the dataset size:
// -(1/B) sum_b [log(P_b0 / (P_b0 + K/N + eps)) + sum_{k>0} log((K/N) / (P_bk + K/N + eps))].
torch::Tensor crd_nce_loss(const torch::Tensor& scores, int64_t dataset_size);

class CrdImpl : public DistillerImpl {
 public:
  CrdImpl(const DistillerContext& context, const CrdOptions& options);
  LossTerms forward(const ModelOutput& student, const ModelOutput& teacher, const Batch& batch,
                    const StepInfo& step) override;
  TeacherReads teacher_reads() const override;

  // The loss for given sample indices [B] and bank rows [B, K + 1] (column 0 = the samples'
  // own rows); updates the banks (and fixes Z on the first call).
  torch::Tensor compute(const torch::Tensor& student_embedding, const torch::Tensor& teacher_embedding,
                        const torch::Tensor& index, const torch::Tensor& rows);

  torch::nn::Linear student_head{nullptr}, teacher_head{nullptr};
  torch::Tensor student_memory, teacher_memory;  // [N, feat_dim]
  torch::Tensor normaliser;                      // [2]: Z of the student- and teacher-anchored scores (< 0: unset)

 private:
  CrdOptions options_;
  int64_t dataset_size_;
};

}  // namespace distillery

#include "distillery/distill/registry.h"

#include <fmt/format.h>

namespace distillery {

// Each method's factory lives in its own file under methods/.
#define DISTILLERY_DECLARE_DISTILLER(factory) \
  Distiller factory(const DistillerContext& context, const ConfigSection& params)

DISTILLERY_DECLARE_DISTILLER(make_kd_distiller);
DISTILLERY_DECLARE_DISTILLER(make_cwd_distiller);
DISTILLERY_DECLARE_DISTILLER(make_dist_distiller);
DISTILLERY_DECLARE_DISTILLER(make_at_distiller);
DISTILLERY_DECLARE_DISTILLER(make_fitnet_distiller);
DISTILLERY_DECLARE_DISTILLER(make_skd_distiller);
DISTILLERY_DECLARE_DISTILLER(make_ofa_distiller);
DISTILLERY_DECLARE_DISTILLER(make_cirkd_distiller);
DISTILLERY_DECLARE_DISTILLER(make_heteroakd_distiller);
DISTILLERY_DECLARE_DISTILLER(make_dkd_distiller);
DISTILLERY_DECLARE_DISTILLER(make_rkd_distiller);
DISTILLERY_DECLARE_DISTILLER(make_crd_distiller);

const std::vector<DistillerEntry>& distiller_registry() {
  static const std::vector<DistillerEntry> entries = {
      {"kd", "pixel-wise KL between softened teacher and student logits (Hinton KD per pixel)", make_kd_distiller},
      {"cwd", "channel-wise distillation: KL between per-channel spatial distributions", make_cwd_distiller},
      {"dist", "DIST: inter- and intra-class Pearson relations of per-pixel predictions", make_dist_distiller},
      {"at", "attention transfer: normalised channel-energy maps of chosen stages", make_at_distiller},
      {"fitnet", "FitNet hints: 1x1 regressor from a student stage to a teacher stage, MSE", make_fitnet_distiller},
      {"skd", "structured KD (pairwise): cosine-similarity matrices of pooled features, MSE", make_skd_distiller},
      {"ofa", "OFA: student-stage branches to logits (per pixel or pooled per image), (p_t + y)^eps - y targets", make_ofa_distiller},
      {"cirkd", "CIRKD: mini-batch and memory-bank pixel/region similarity distributions, plus pixel KD", make_cirkd_distiller},
      {"heteroakd", "HeteroAKD: aligned logits space, teacher-student knowledge mixing (KMM) and evaluation (KEM)", make_heteroakd_distiller},
      {"dkd", "DKD: decoupled KD, target-class (TCKD) and non-target-class (NCKD) KL with warm-up", make_dkd_distiller},
      {"rkd", "RKD: pairwise distances and triplet angles of the pooled embeddings", make_rkd_distiller},
      {"crd", "CRD: contrastive embeddings against per-sample memory banks (NCE)", make_crd_distiller},
  };
  return entries;
}

Distiller create_distiller(const std::string& name, const DistillerContext& context,
                           const ConfigSection& params) {
  std::string known;
  for (const auto& entry : distiller_registry()) {
    if (entry.name == name) return entry.build(context, params);
    known += (known.empty() ? "" : ", ") + entry.name;
  }
  throw ConfigError(fmt::format("config key '{}': unknown distiller '{}' (known: {})",
                                params.key_path("name"), name, known));
}

}  // namespace distillery

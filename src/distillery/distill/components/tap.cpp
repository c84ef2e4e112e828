#include "distillery/distill/components/tap.h"

#include <fmt/format.h>

namespace distillery {

int64_t resolve_stage_index(const ConfigSection& cfg, const std::string& key, int64_t index,
                            int64_t num_stages) {
  const int64_t resolved = index < 0 ? num_stages + index : index;
  cfg.check(resolved >= 0 && resolved < num_stages, key,
            fmt::format("stage {} does not exist: the model has {} stages (indices {}..{} or -{}..-1)",
                        index, num_stages, 0, num_stages - 1, num_stages));
  return resolved;
}

std::vector<int64_t> read_stage_indices(const ConfigSection& cfg, const std::string& key,
                                        const std::vector<int64_t>& fallback, int64_t num_stages) {
  auto indices = cfg.get<std::vector<int64_t>>(key, fallback);
  cfg.check(!indices.empty(), key, "needs at least one stage");
  for (auto& index : indices) index = resolve_stage_index(cfg, key, index, num_stages);
  return indices;
}

FeatureTap FeatureTap::parse(const ConfigSection& cfg, const std::vector<StageSpec>& stages,
                             const std::string& on_default, int64_t stage_default,
                             const std::string& on_key, const std::string& stage_key) {
  const auto on = cfg.get_choice(on_key, on_default, {"logits", "features", "aux_logits"});
  if (on == "logits") return logits();
  if (on == "aux_logits") return aux_logits();
  const auto index = cfg.get<int64_t>(stage_key, stage_default);
  return features(resolve_stage_index(cfg, stage_key, index, static_cast<int64_t>(stages.size())));
}

torch::Tensor FeatureTap::read(const ModelOutput& output) const {
  switch (kind) {
    case Kind::Logits:
      return output.logits;
    case Kind::AuxLogits:
      if (!output.aux_logits.defined())
        throw Error("distiller reads aux_logits but the model has no auxiliary head");
      return output.aux_logits;
    case Kind::Features:
      if (stage >= static_cast<int64_t>(output.features.size()))
        throw Error(fmt::format("distiller reads features[{}] but the model returned {} stages",
                                stage, output.features.size()));
      if (!output.features[stage].defined())
        throw Error(fmt::format("distiller reads features[{}], which these outputs do not hold "
                                "(a teacher cache built for other distillers?)", stage));
      return output.features[stage];
  }
  return {};
}

int64_t FeatureTap::channels(const std::vector<StageSpec>& stages, int64_t num_classes) const {
  return kind == Kind::Features ? stages.at(stage).channels : num_classes;
}

std::string FeatureTap::describe() const {
  switch (kind) {
    case Kind::Logits: return "logits";
    case Kind::AuxLogits: return "aux_logits";
    case Kind::Features: return fmt::format("features[{}]", stage);
  }
  return "?";
}

void FeatureTap::add_to(TeacherReads& reads) const {
  switch (kind) {
    case Kind::Logits: reads.logits = true; break;
    case Kind::AuxLogits: reads.aux_logits = true; break;
    case Kind::Features: reads.stages.insert(stage); break;
  }
}

StagePairTaps read_stage_pair(const ConfigSection& cfg, const std::vector<StageSpec>& student_stages,
                              const std::vector<StageSpec>& teacher_stages) {
  const auto stage = cfg.get<int64_t>("stage", -1);
  const auto teacher_stage = cfg.get<int64_t>("teacher_stage", stage);
  return {FeatureTap::features(resolve_stage_index(cfg, "stage", stage,
                                                   static_cast<int64_t>(student_stages.size()))),
          FeatureTap::features(resolve_stage_index(cfg, "teacher_stage", teacher_stage,
                                                   static_cast<int64_t>(teacher_stages.size())))};
}

}  // namespace distillery

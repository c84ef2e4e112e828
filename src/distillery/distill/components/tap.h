// Feature taps: which output of a model a distiller reads (final logits, a stage's features by
// index, or the auxiliary logits), and how many channels that output has.
#pragma once
#include <torch/types.h>

#include <string>
#include <vector>

#include "distillery/core/config.h"
#include "distillery/distill/distiller.h"
#include "distillery/models/model.h"

namespace distillery {

// A stage index from the config (negative counts from the end: -1 = deepest) as 0-based
// position; throws ConfigError naming `key` when it is out of range.
int64_t resolve_stage_index(const ConfigSection& cfg, const std::string& key, int64_t index,
                            int64_t num_stages);

// Reads `key` as a list of stage indices (default `fallback`) and resolves each.
std::vector<int64_t> read_stage_indices(const ConfigSection& cfg, const std::string& key,
                                        const std::vector<int64_t>& fallback, int64_t num_stages);

struct FeatureTap {
  enum class Kind { Logits, Features, AuxLogits };
  Kind kind = Kind::Logits;
  int64_t stage = 0;  // resolved, 0-based; used for Kind::Features only

  static FeatureTap logits() { return {Kind::Logits, 0}; }
  static FeatureTap aux_logits() { return {Kind::AuxLogits, 0}; }
  static FeatureTap features(int64_t resolved_stage) { return {Kind::Features, resolved_stage}; }

  // Reads `on_key` (logits | features | aux_logits) and, for features, `stage_key` (an index
  // into `stages`, negative from the end).
  static FeatureTap parse(const ConfigSection& cfg, const std::vector<StageSpec>& stages,
                          const std::string& on_default, int64_t stage_default,
                          const std::string& on_key = "on", const std::string& stage_key = "stage");

  // The tapped tensor; throws Error when the output lacks it (no aux head, too few stages).
  torch::Tensor read(const ModelOutput& output) const;
  int64_t channels(const std::vector<StageSpec>& stages, int64_t num_classes) const;
  std::string describe() const;  // "logits", "features[2]", "aux_logits"
  void add_to(TeacherReads& reads) const;
};

// A student stage (`stage`, default the last) and the teacher stage it is compared with
// (`teacher_stage`, default the same index), both resolved against their networks.
struct StagePairTaps {
  FeatureTap student, teacher;
};
StagePairTaps read_stage_pair(const ConfigSection& cfg, const std::vector<StageSpec>& student_stages,
                              const std::vector<StageSpec>& teacher_stages);

}  // namespace distillery

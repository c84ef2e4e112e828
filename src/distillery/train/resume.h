// Choosing and vetting the checkpoint a run resumes from.
#pragma once
#include <cstdint>
#include <string>

#include "distillery/train/checkpoint.h"
#include "distillery/train/recipe.h"

namespace distillery {

constexpr const char* kLatestCheckpoint = "latest.ckpt";
constexpr const char* kPreviousCheckpoint = "previous.ckpt";  // latest's predecessor

// <run_dir>/latest.ckpt when it passes its integrity checks; otherwise, with a one-line warning
// on stderr, <run_dir>/previous.ckpt when that one does. Error naming latest.ckpt's problem
// when neither can be used.
std::string resume_checkpoint(const std::string& run_dir);

// ConfigError naming the first difference when the checkpoint cannot continue under this
// recipe: another student model, another class count, or other model settings (model.* and
// teacher.model.*, compared with the recipe stored in the checkpoint).
void check_resumable(const std::string& path, const CheckpointMeta& meta, const Recipe& recipe,
                     int64_t num_classes);

}  // namespace distillery

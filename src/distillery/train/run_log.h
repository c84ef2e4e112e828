// metrics.jsonl on resume: records written after the checkpoint a run resumes from describe
// steps that the resumed run repeats, so they are cut away before it appends its own.
#pragma once
#include <cstdint>
#include <string>

namespace distillery {

// Keeps the lines of the JSON-lines log at `path` that carry a "step" <= `step` and drops the
// rest: later records, run summaries (they have no step) and a half-written last line. The
// file is rewritten through a temporary file and a rename, so a crash here loses nothing.
// Returns the number of lines dropped; a missing file is left missing.
int64_t truncate_run_log(const std::string& path, int64_t step);

}  // namespace distillery

// Fuzzes the teacher-output cache reader (header JSON, sizes, end marker) behind its memory map.
#include <string>

#include "distillery/core/error.h"
#include "distillery/train/teacher_cache.h"
#include "fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = distillery::fuzz::input_path(".cache");
  distillery::fuzz::write_input(path, data, size);
  try {
    distillery::CachedTeacher cache(path);
    if (cache.header().steps <= 0) __builtin_trap();  // the reader promised a schedule
  } catch (const distillery::Error&) {
  }
  return 0;
}

// libFuzzer targets hand our path-based readers a file: this writes the input to one per
// process (in /dev/shm when there is one, so no disk is touched).
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

namespace distillery::fuzz {

inline std::string input_path(const char* suffix) {
  std::string dir = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path().string();
  return dir + "/distillery_fuzz_" + std::to_string(::getpid()) + suffix;
}

inline void write_input(const std::string& path, const uint8_t* data, size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
}

}  // namespace distillery::fuzz

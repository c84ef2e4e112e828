// Fuzzes the gzip IDX reader. The first byte picks the mode: even, the rest is the .gz file as
// is (gzip framing, deflate and IDX parsing); odd, the rest is the IDX content and the target
// compresses it first, so that the fuzzer reaches the IDX header checks behind valid gzip.
#include <zlib.h>

#include <string>

#include "distillery/core/error.h"
#include "distillery/data/idx.h"
#include "fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = distillery::fuzz::input_path(".gz");
  if (size == 0) return 0;
  const bool compress = data[0] & 1;
  const uint32_t magic = (data[0] & 2) ? distillery::kIdxLabelsMagic : distillery::kIdxImagesMagic;
  ++data, --size;
  if (compress) {
    gzFile out = gzopen(path.c_str(), "wb1");
    if (size > 0) gzwrite(out, data, static_cast<unsigned>(size));
    gzclose(out);
  } else {
    distillery::fuzz::write_input(path, data, size);
  }
  try {
    distillery::IdxArray array = distillery::read_idx_gz(path, magic);
    // A successful read must hold exactly what the header declared.
    int64_t expected = 1;
    for (int64_t d : array.dims) expected *= d;
    if (array.data.numel() != expected) __builtin_trap();
  } catch (const distillery::DataError&) {
  }
  return 0;
}

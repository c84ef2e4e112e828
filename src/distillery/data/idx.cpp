#include "distillery/data/idx.h"

#include <fmt/format.h>
#include <torch/torch.h>
#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <memory>

#include "distillery/core/error.h"

namespace distillery {
namespace {

struct GzCloser {
  void operator()(gzFile_s* file) const { gzclose(file); }
};
using GzHandle = std::unique_ptr<gzFile_s, GzCloser>;

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw DataError(fmt::format("IDX file '{}': {}", path, problem));
}

// gzopen reads non-gzip files transparently, so check the gzip signature ourselves.
void check_gzip_signature(const std::string& path) {
  std::FILE* raw = std::fopen(path.c_str(), "rb");
  if (!raw) fail(path, "cannot be opened (missing or unreadable)");
  unsigned char signature[2] = {0, 0};
  size_t got = std::fread(signature, 1, 2, raw);
  std::fclose(raw);
  if (got < 2 || signature[0] != 0x1f || signature[1] != 0x8b) fail(path, "not a gzip file");
}

// Reads exactly `size` bytes unless the stream ends first; returns the count read.
uint64_t read_bytes(gzFile file, const std::string& path, unsigned char* out, uint64_t size) {
  uint64_t total = 0;
  while (total < size) {
    unsigned chunk = static_cast<unsigned>(std::min<uint64_t>(size - total, 1u << 30));
    int got = gzread(file, out + total, chunk);
    if (got < 0) {
      int code = 0;
      const char* message = gzerror(file, &code);
      fail(path, fmt::format("corrupt gzip stream ({})", message ? message : "unknown error"));
    }
    if (got == 0) {
      // A compressed stream cut off early shows up as Z_BUF_ERROR once the read returns 0.
      int code = 0;
      gzerror(file, &code);
      if (code == Z_BUF_ERROR) fail(path, "truncated gzip stream (unexpected end of file)");
      break;
    }
    total += static_cast<uint64_t>(got);
  }
  return total;
}

uint32_t big_endian_u32(const unsigned char* bytes) {
  return (uint32_t(bytes[0]) << 24) | (uint32_t(bytes[1]) << 16) | (uint32_t(bytes[2]) << 8) |
         uint32_t(bytes[3]);
}

}  // namespace

IdxArray read_idx_gz(const std::string& path, uint32_t expected_magic) {
  check_gzip_signature(path);
  GzHandle file(gzopen(path.c_str(), "rb"));
  if (!file) fail(path, "cannot be opened");
  gzbuffer(file.get(), 1 << 18);

  unsigned char header[4];
  if (read_bytes(file.get(), path, header, 4) != 4) fail(path, "truncated: no IDX header");
  uint32_t magic = big_endian_u32(header);
  if (magic != expected_magic)
    fail(path, fmt::format("wrong magic number 0x{:08x} (expected 0x{:08x})", magic, expected_magic));
  int64_t rank = header[3];

  std::vector<unsigned char> dim_bytes(static_cast<size_t>(4 * rank));
  if (read_bytes(file.get(), path, dim_bytes.data(), dim_bytes.size()) != dim_bytes.size())
    fail(path, "truncated: incomplete dimension list");
  IdxArray array;
  uint64_t total = 1;
  for (int64_t d = 0; d < rank; ++d) {
    uint32_t dim = big_endian_u32(&dim_bytes[4 * d]);
    if (dim == 0) fail(path, fmt::format("dimension {} is zero", d));
    total *= dim;  // cannot overflow: checked against the limit after every factor
    if (total > kIdxMaxBytes)
      fail(path, fmt::format("declared size exceeds {} bytes; refusing to allocate", kIdxMaxBytes));
    array.dims.push_back(dim);
  }

  // Read in chunks, growing the buffer as data arrives: a forged header declaring close to the
  // limit in a tiny file must not make us allocate the full declared size first.
  constexpr uint64_t kChunk = uint64_t(1) << 24;
  std::vector<unsigned char> bytes;
  while (bytes.size() < total) {
    const uint64_t have = bytes.size(), want = std::min(kChunk, total - have);
    bytes.resize(have + want);
    uint64_t got = read_bytes(file.get(), path, bytes.data() + have, want);
    if (got != want)
      fail(path, fmt::format("truncated: {} of {} declared data bytes present", have + got, total));
  }
  array.data = torch::empty(array.dims, torch::kUInt8);
  std::memcpy(array.data.data_ptr<uint8_t>(), bytes.data(), total);
  unsigned char extra = 0;
  if (read_bytes(file.get(), path, &extra, 1) != 0)
    fail(path, "trailing bytes after the declared data");
  return array;
}

torch::Tensor read_idx_images(const std::string& path) {
  return read_idx_gz(path, kIdxImagesMagic).data;
}

torch::Tensor read_idx_labels(const std::string& path) {
  return read_idx_gz(path, kIdxLabelsMagic).data;
}

}  // namespace distillery

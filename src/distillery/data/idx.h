// Reader for gzip-compressed IDX files (the MNIST / Fashion-MNIST container format):
// a 4-byte magic (0, 0, element type, number of dimensions), big-endian uint32 dimensions,
// then the elements. Only unsigned-byte elements (type 0x08) are supported.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace distillery {

constexpr uint32_t kIdxImagesMagic = 0x00000803;  // uint8, 3 dimensions [N, H, W]
constexpr uint32_t kIdxLabelsMagic = 0x00000801;  // uint8, 1 dimension [N]

// Files declaring more than this are rejected before anything is allocated.
constexpr uint64_t kIdxMaxBytes = 1000000000;

struct IdxArray {
  std::vector<int64_t> dims;
  torch::Tensor data;  // uint8, shaped as dims
};

// Reads a whole .gz IDX file and checks that its magic equals `expected_magic` and that the
// decompressed payload has exactly the declared size (no truncation, no trailing bytes).
// Throws DataError("<path>: <problem>") on any failure.
IdxArray read_idx_gz(const std::string& path, uint32_t expected_magic);

// Convenience wrappers: uint8 [N, H, W] and uint8 [N].
torch::Tensor read_idx_images(const std::string& path);
torch::Tensor read_idx_labels(const std::string& path);

}  // namespace distillery

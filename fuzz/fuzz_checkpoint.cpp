// Fuzzes the checkpoint reader. A CRC-32 guards the whole file, so random mutations mostly
// exercise the header and checksum checks. The first byte picks the mode: even, the rest is the
// file as is; odd, the rest is [1-byte metadata length][metadata][payload] and the target wraps
// it in a valid header and checksum, so the fuzzer reaches the metadata JSON and the tensor
// archive (LibTorch's reader) behind them.
#include <torch/torch.h>
#include <zlib.h>

#include <string>

#include "distillery/core/error.h"
#include "distillery/train/checkpoint.h"
#include "fuzz_input_file.h"

namespace {

std::string wrap(const uint8_t* data, size_t size) {
  size_t meta_size = size > 0 ? std::min<size_t>(data[0], size - 1) : 0;
  std::string meta(reinterpret_cast<const char*>(data) + (size > 0), meta_size);
  std::string payload(reinterpret_cast<const char*>(data) + (size > 0) + meta_size,
                      size - (size > 0) - meta_size);
  std::string out = "DSTLCKPT";
  auto put = [&](auto value) { out.append(reinterpret_cast<const char*>(&value), sizeof(value)); };
  put(uint32_t(1));
  put(uint64_t(meta.size()));
  put(uint64_t(payload.size()));
  out += meta + payload;
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(meta.data()), meta.size());
  crc = crc32(crc, reinterpret_cast<const Bytef*>(payload.data()), payload.size());
  put(uint32_t(crc));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = distillery::fuzz::input_path(".ckpt");
  static torch::nn::Linear model(3, 2);
  if (size == 0) return 0;
  if (data[0] & 1) {
    std::string bytes = wrap(data + 1, size - 1);
    distillery::fuzz::write_input(path, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  } else {
    distillery::fuzz::write_input(path, data + 1, size - 1);
  }
  try {
    distillery::load_checkpoint(path, distillery::CheckpointParts{model.ptr().get()});
  } catch (const distillery::Error&) {
  }
  return 0;
}

// The safetensors format (Hugging Face): an 8-byte little-endian header length N, N bytes of
// JSON {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
// "__metadata__": {"key": "value"}}, then the raw little-endian tensor bytes. Pure data: reading
// it never executes anything (unlike pickled .pth files), and every header entry is checked
// before a byte of it is used.
#pragma once
#include <torch/types.h>

#include <map>
#include <string>

namespace distillery {

struct SafetensorsFile {
  std::map<std::string, torch::Tensor> tensors;    // CPU tensors in their stored dtype
  std::map<std::string, std::string> metadata;     // the optional "__metadata__" block
};

// Supported dtypes: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL. DataError naming the file and the
// entry on any problem: truncated file, header length beyond the file or above 100 MB, invalid
// JSON, unknown dtype, negative or non-integer shape, shape * element size != the offsets'
// span, offsets out of the buffer, overlapping entries, or buffer bytes no entry covers.
SafetensorsFile read_safetensors(const std::string& path);
// The same checks on bytes in memory (`origin` names them in errors).
SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& origin);

// Writes tensors (made contiguous, moved to CPU) in name order, 8-byte aligned data, atomically
// (temporary file + rename). Error for a dtype the format cannot hold.
void write_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});
std::string serialize_safetensors(const std::map<std::string, torch::Tensor>& tensors,
                                  const std::map<std::string, std::string>& metadata = {});

}  // namespace distillery

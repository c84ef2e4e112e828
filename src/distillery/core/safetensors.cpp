#include "distillery/core/safetensors.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "distillery/core/error.h"

namespace distillery {
namespace {

// Larger headers are refused before allocating them (the reference implementation's limit).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DtypeInfo {
  const char* name;
  torch::ScalarType type;
  int64_t size;
};
const DtypeInfo kDtypes[] = {
    {"F64", torch::kFloat64, 8}, {"F32", torch::kFloat32, 4}, {"F16", torch::kFloat16, 2},
    {"BF16", torch::kBFloat16, 2}, {"I64", torch::kInt64, 8}, {"I32", torch::kInt32, 4},
    {"I16", torch::kInt16, 2},   {"I8", torch::kInt8, 1},     {"U8", torch::kUInt8, 1},
    {"BOOL", torch::kBool, 1}};

const DtypeInfo* dtype_by_name(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

const DtypeInfo* dtype_by_type(torch::ScalarType type) {
  for (const auto& d : kDtypes)
    if (type == d.type) return &d;
  return nullptr;
}

bool host_is_little_endian() {
  const uint16_t probe = 1;
  uint8_t first = 0;
  std::memcpy(&first, &probe, 1);
  return first == 1;
}

[[noreturn]] void fail(const std::string& origin, const std::string& problem) {
  throw DataError(fmt::format("safetensors '{}': {}", origin, problem));
}

uint64_t read_u64_le(const char* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(p[i]);
  return value;
}

struct Entry {
  std::string name;
  const DtypeInfo* dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;
};

Entry check_entry(const std::string& origin, const std::string& name, const nlohmann::json& value,
                  uint64_t buffer_size) {
  auto bad = [&](const std::string& problem) { fail(origin, fmt::format("entry '{}': {}", name, problem)); };
  if (!value.is_object()) bad("is not a JSON object");
  for (const auto& [key, _] : value.items())
    if (key != "dtype" && key != "shape" && key != "data_offsets") bad(fmt::format("unknown field '{}'", key));
  if (!value.contains("dtype") || !value["dtype"].is_string()) bad("missing or non-string 'dtype'");
  Entry entry;
  entry.name = name;
  entry.dtype = dtype_by_name(value["dtype"].get<std::string>());
  if (!entry.dtype)
    bad(fmt::format("unsupported dtype '{}' (known: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)",
                    value["dtype"].get<std::string>()));
  if (!value.contains("shape") || !value["shape"].is_array()) bad("missing or non-array 'shape'");
  // Element count with overflow checks: a hostile shape must not wrap around to a small size.
  uint64_t count = 1;
  for (const auto& dim : value["shape"]) {
    if (!dim.is_number_unsigned()) bad("shape entries must be non-negative integers");
    uint64_t d = dim.get<uint64_t>();
    if (d > static_cast<uint64_t>(INT64_MAX) || (d != 0 && count > UINT64_MAX / d / 8))
      bad("shape is too large");
    count *= d;
    entry.shape.push_back(static_cast<int64_t>(d));
  }
  if (!value.contains("data_offsets") || !value["data_offsets"].is_array() ||
      value["data_offsets"].size() != 2 || !value["data_offsets"][0].is_number_unsigned() ||
      !value["data_offsets"][1].is_number_unsigned())
    bad("'data_offsets' must be two non-negative integers");
  entry.begin = value["data_offsets"][0].get<uint64_t>();
  entry.end = value["data_offsets"][1].get<uint64_t>();
  if (entry.begin > entry.end) bad(fmt::format("data_offsets [{}, {}] are reversed", entry.begin, entry.end));
  if (entry.end > buffer_size)
    bad(fmt::format("data_offsets [{}, {}] exceed the {}-byte data buffer", entry.begin, entry.end,
                    buffer_size));
  const uint64_t expected = count * static_cast<uint64_t>(entry.dtype->size);
  if (entry.end - entry.begin != expected)
    bad(fmt::format("shape [{}] of {} needs {} bytes but data_offsets span {}",
                    fmt::join(entry.shape, ", "), entry.dtype->name, expected, entry.end - entry.begin));
  return entry;
}

}  // namespace

SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& origin) {
  if (!host_is_little_endian()) fail(origin, "only little-endian hosts are supported");
  if (bytes.size() < 8) fail(origin, fmt::format("file of {} bytes is too short for the header length", bytes.size()));
  const uint64_t header_size = read_u64_le(bytes.data());
  if (header_size > kMaxHeaderBytes)
    fail(origin, fmt::format("header length {} exceeds the 100 MB limit", header_size));
  if (header_size > bytes.size() - 8)
    fail(origin, fmt::format("header length {} exceeds the {} bytes after it (truncated?)", header_size,
                             bytes.size() - 8));
  if (header_size < 2 || bytes[8] != '{') fail(origin, "header does not start with '{'");
  nlohmann::json header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + header_size,
                                                nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) fail(origin, "header is not valid JSON");
  if (!header.is_object()) fail(origin, "header is not a JSON object");

  const uint64_t data_start = 8 + header_size;
  const uint64_t buffer_size = bytes.size() - data_start;
  SafetensorsFile file;
  std::vector<Entry> entries;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) fail(origin, "'__metadata__' is not a JSON object");
      for (const auto& [key, text] : value.items()) {
        if (!text.is_string()) fail(origin, fmt::format("metadata '{}' is not a string", key));
        file.metadata[key] = text.get<std::string>();
      }
      continue;
    }
    entries.push_back(check_entry(origin, name, value, buffer_size));
  }
  // The entries must tile the buffer exactly: no overlap (two tensors aliasing bytes) and no
  // holes (bytes nobody accounts for).
  std::vector<const Entry*> by_offset;
  for (const auto& e : entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t covered = 0;
  for (const Entry* e : by_offset) {
    if (e->begin < covered)
      fail(origin, fmt::format("entry '{}' (bytes [{}, {})) overlaps another entry", e->name, e->begin, e->end));
    if (e->begin > covered)
      fail(origin, fmt::format("bytes [{}, {}) of the data buffer belong to no entry", covered, e->begin));
    covered = e->end;
  }
  if (covered != buffer_size)
    fail(origin, fmt::format("bytes [{}, {}) of the data buffer belong to no entry", covered, buffer_size));

  for (const auto& e : entries) {
    torch::Tensor t = torch::empty(e.shape, torch::TensorOptions().dtype(e.dtype->type));
    if (e.end > e.begin)
      std::memcpy(t.data_ptr(), bytes.data() + data_start + e.begin, static_cast<size_t>(e.end - e.begin));
    file.tensors.emplace(e.name, std::move(t));
  }
  return file;
}

SafetensorsFile read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(fmt::format("safetensors '{}': cannot be opened (missing or unreadable)", path));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw DataError(fmt::format("safetensors '{}': read error", path));
  return parse_safetensors(buffer.str(), path);
}

std::string serialize_safetensors(const std::map<std::string, torch::Tensor>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  if (!host_is_little_endian()) throw Error("safetensors: only little-endian hosts are supported");
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> payload;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__") throw Error("safetensors: '__metadata__' cannot name a tensor");
    if (!tensor.defined()) throw Error(fmt::format("safetensors: tensor '{}' is undefined", name));
    const DtypeInfo* dtype = dtype_by_type(tensor.scalar_type());
    if (!dtype)
      throw Error(fmt::format("safetensors: tensor '{}' has dtype {}, which the format cannot hold",
                              name, c10::toString(tensor.scalar_type())));
    torch::Tensor data = tensor.detach().to(torch::kCPU).contiguous();
    const uint64_t size = static_cast<uint64_t>(data.numel()) * dtype->size;
    header[name] = {{"dtype", dtype->name}, {"shape", data.sizes().vec()}, {"data_offsets", {offset, offset + size}}};
    offset += size;
    payload.push_back(data);
  }
  std::string text = header.dump();
  // Pad the header with spaces so the data starts 8-byte aligned (allowed by the format).
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');
  std::string out(8, '\0');
  const uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out += text;
  out.reserve(out.size() + offset);
  for (const auto& data : payload)
    out.append(static_cast<const char*>(data.data_ptr()), data.numel() * data.element_size());
  return out;
}

void write_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string bytes = serialize_safetensors(tensors, metadata);
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) throw Error(fmt::format("safetensors '{}': cannot be written", path));
  }
  std::error_code ec;
  std::filesystem::rename(temporary, path, ec);
  if (ec) throw Error(fmt::format("safetensors '{}': cannot be written ({})", path, ec.message()));
}

}  // namespace distillery

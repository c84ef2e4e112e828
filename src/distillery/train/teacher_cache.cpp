#include "distillery/train/teacher_cache.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <torch/torch.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>
#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "distillery/core/error.h"
#include "distillery/core/progress.h"
#include "distillery/models/zoo.h"
#include "distillery/train/data_setup.h"
#include "distillery/train/trainer.h"

namespace distillery {
namespace {

constexpr char kMagic[9] = "DSTLTCH1";
constexpr char kEndMagic[9] = "DSTLTEND";
constexpr uint64_t kMaxHeader = uint64_t(1) << 24;
constexpr double kHalfMax = 65504.0;

size_t align64(size_t n) { return (n + 63) / 64 * 64; }

std::string data_block_yaml(const Recipe& recipe) {
  YAML::Node data = recipe.config.node()["data"];
  if (!data) return "{}";
  YAML::Emitter out;
  out << YAML::Flow << data;
  return out.c_str();
}

std::string stage_entry_name(int64_t stage) { return fmt::format("features[{}]", stage); }

nlohmann::json to_json(const TeacherCacheHeader& h) {
  nlohmann::json stages = nlohmann::json::array();
  for (const auto& s : h.stages) stages.push_back({s.channels, s.stride});
  nlohmann::json entries = nlohmann::json::array();
  for (const auto& e : h.entries) entries.push_back({{"name", e.name}, {"shape", e.shape}});
  return {{"format", 1},
          {"teacher", {{"model", h.teacher_model}, {"num_classes", h.num_classes}, {"stages", stages}}},
          {"schedule", {{"seed", h.seed}, {"batch_size", h.batch_size}, {"steps", h.steps},
                        {"train_size", h.train_size}, {"data", h.data}}},
          {"entries", entries}};
}

TeacherCacheHeader from_json(const nlohmann::json& j) {
  TeacherCacheHeader h;
  if (j.at("format").get<int>() != 1) throw std::runtime_error("unknown format version");
  const auto& t = j.at("teacher");
  h.teacher_model = t.at("model").get<std::string>();
  h.num_classes = t.at("num_classes").get<int64_t>();
  for (const auto& s : t.at("stages")) h.stages.push_back({s.at(0).get<int64_t>(), s.at(1).get<int64_t>()});
  const auto& s = j.at("schedule");
  h.seed = s.at("seed").get<uint64_t>();
  h.batch_size = s.at("batch_size").get<int64_t>();
  h.steps = s.at("steps").get<int64_t>();
  h.train_size = s.at("train_size").get<int64_t>();
  h.data = s.at("data").get<std::string>();
  for (const auto& e : j.at("entries"))
    h.entries.push_back({e.at("name").get<std::string>(), e.at("shape").get<std::vector<int64_t>>()});
  return h;
}

// The outputs a cache stores for `reads`, in a fixed order.
std::vector<std::pair<std::string, torch::Tensor>> selected_outputs(const ModelOutput& out,
                                                                    const TeacherReads& reads) {
  std::vector<std::pair<std::string, torch::Tensor>> selected;
  auto take = [&](const std::string& name, const torch::Tensor& t) {
    if (t.defined()) selected.emplace_back(name, t);
  };
  if (reads.logits) take("logits", out.logits);
  if (reads.aux_logits) take("aux_logits", out.aux_logits);
  if (reads.embedding) take("embedding", out.embedding);
  for (int64_t i = 0; i < static_cast<int64_t>(out.features.size()); ++i)
    if (reads.reads_stage(i)) take(stage_entry_name(i), out.features[i]);
  return selected;
}

}  // namespace

// Streams the file to `path`.tmp; commit() fsyncs and renames it into place.
class TeacherCacheWriter::File {
 public:
  explicit File(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
    file_ = std::fopen(tmp_.c_str(), "wb");
    if (!file_) throw Error(fmt::format("teacher cache '{}': cannot write ({})", tmp_, std::strerror(errno)));
  }
  ~File() {
    if (file_) {
      std::fclose(file_);
      std::remove(tmp_.c_str());
    }
  }
  void write(const void* data, size_t bytes) {
    if (bytes && std::fwrite(data, 1, bytes, file_) != bytes)
      throw Error(fmt::format("teacher cache '{}': write failed ({})", tmp_, std::strerror(errno)));
  }
  void commit() {
    if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0)
      throw Error(fmt::format("teacher cache '{}': flush failed ({})", tmp_, std::strerror(errno)));
    std::fclose(file_);
    file_ = nullptr;
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
      std::remove(tmp_.c_str());
      throw Error(fmt::format("teacher cache '{}': rename failed ({})", path_, std::strerror(errno)));
    }
  }

 private:
  std::string path_, tmp_;
  std::FILE* file_ = nullptr;
};

int64_t TeacherCacheHeader::block_bytes() const {
  int64_t per_sample = static_cast<int64_t>(sizeof(int64_t));
  for (const auto& e : entries) {
    int64_t n = 1;
    for (auto d : e.shape) n *= d;
    per_sample += n * 2;
  }
  return per_sample * batch_size;
}

TeacherCacheWriter::TeacherCacheWriter(std::string path, TeacherCacheHeader header, TeacherReads reads)
    : file_(std::make_unique<File>(std::move(path))), header_(std::move(header)), reads_(std::move(reads)) {
  header_.entries.clear();
}

TeacherCacheWriter::~TeacherCacheWriter() = default;

void TeacherCacheWriter::append(const Batch& batch, const ModelOutput& teacher_outputs) {
  const int64_t step = static_cast<int64_t>(checksums_.size());
  if (step >= header_.steps) throw Error(fmt::format("teacher cache: more than {} steps appended", header_.steps));
  if (batch.step != step)
    throw Error(fmt::format("teacher cache: got the batch of step {} where step {} belongs", batch.step, step));
  if (batch.index.numel() != header_.batch_size)
    throw Error(fmt::format("teacher cache: batch of {} samples, the header says {}", batch.index.numel(),
                            header_.batch_size));
  auto selected = selected_outputs(teacher_outputs, reads_);
  if (step == 0) {
    for (const auto& [name, t] : selected) {
      auto sizes = t.sizes().vec();
      header_.entries.push_back({name, std::vector<int64_t>(sizes.begin() + 1, sizes.end())});
    }
    std::string json = to_json(header_).dump();
    uint64_t length = json.size();
    file_->write(kMagic, 8);
    file_->write(&length, sizeof(length));
    file_->write(json.data(), json.size());
    std::string padding(align64(16 + json.size()) - 16 - json.size(), '\0');
    file_->write(padding.data(), padding.size());
    block_.resize(static_cast<size_t>(header_.block_bytes()));
  }
  char* cursor = block_.data();
  auto index = batch.index.to(torch::kInt64).contiguous();
  std::memcpy(cursor, index.data_ptr<int64_t>(), index.numel() * sizeof(int64_t));
  cursor += index.numel() * sizeof(int64_t);
  size_t k = 0;
  for (const auto& [name, t] : selected) {
    const auto& entry = header_.entries.at(k++);
    auto expected = entry.shape;
    expected.insert(expected.begin(), header_.batch_size);
    if (t.sizes().vec() != expected || entry.name != name)
      throw Error(fmt::format("teacher cache: {} changed shape at step {}", name, step));
    const double peak = t.abs().max().item<double>();
    if (!std::isfinite(peak) || peak > kHalfMax)
      throw Error(fmt::format("teacher cache: teacher {} holds {} at step {}, outside the fp16 range",
                              name, peak, step));
    auto half = t.to(torch::kHalf).contiguous();
    std::memcpy(cursor, half.data_ptr(), half.numel() * 2);
    cursor += half.numel() * 2;
  }
  file_->write(block_.data(), block_.size());
  checksums_.push_back(
      static_cast<uint32_t>(crc32_z(0L, reinterpret_cast<const Bytef*>(block_.data()), block_.size())));
}

void TeacherCacheWriter::commit() {
  if (static_cast<int64_t>(checksums_.size()) != header_.steps)
    throw Error(fmt::format("teacher cache: {} of {} steps written", checksums_.size(), header_.steps));
  file_->write(checksums_.data(), checksums_.size() * sizeof(uint32_t));
  file_->write(kEndMagic, 8);
  file_->commit();
}

void build_teacher_cache(const Recipe& recipe, const std::string& path, int64_t steps, bool everything) {
  if (!recipe.teacher.enabled)
    throw ConfigError(fmt::format("config '{}': no 'teacher' block to cache", recipe.name));
  if (steps <= 0) throw ConfigError(fmt::format("teacher cache: steps must be positive, got {}", steps));
  if (recipe.teacher.source == "cache")
    throw ConfigError("config key 'teacher.source': is 'cache'; a cache is built from the online teacher");
  std::unique_ptr<TeacherSource> teacher = make_teacher_source(recipe.teacher);
  DataSplits data = load_data_splits(recipe.data);

  TeacherReads reads = TeacherReads::everything();
  if (!recipe.distillers.empty()) {
    // Built (not trained) to validate the recipe and to ask what the distillers read.
    Model student = create_model(recipe.student.name, recipe.student.options);
    DistillerSet distillers(recipe.distillers,
                            make_distiller_context(*student, *teacher, recipe, data.train->size()));
    if (!everything) reads = distillers->teacher_reads();
  }
  recipe.config.check_all_consumed();

  TeacherCacheHeader header;
  header.teacher_model = recipe.teacher.model.name;
  header.num_classes = teacher->num_classes();
  header.stages = teacher->stages();
  header.seed = recipe.seed;
  header.batch_size = recipe.train.batch_size;
  header.steps = steps;
  header.train_size = data.train->size();
  header.data = data_block_yaml(recipe);

  TeacherCacheWriter writer(path, header, reads);
  TrainStream stream(data.train, train_loader_options(recipe), 0);
  ProgressBar bar("cache " + recipe.teacher.model.name, steps);
  for (int64_t step = 0; step < steps; ++step) {
    Batch batch = stream.next();
    writer.append(batch, teacher->outputs(batch));
    bar.update(step + 1);
  }
  bar.finish();
  writer.commit();
}

CachedTeacher::CachedTeacher(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw DataError(fmt::format("teacher cache '{}': cannot open ({})", path, std::strerror(errno)));
  struct stat st {};
  ::fstat(fd, &st);
  map_size_ = static_cast<size_t>(st.st_size);
  if (map_size_ < 16) {
    ::close(fd);
    throw DataError(fmt::format("teacher cache '{}': truncated ({} bytes)", path, map_size_));
  }
  void* map = ::mmap(nullptr, map_size_, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED)
    throw DataError(fmt::format("teacher cache '{}': mmap failed ({})", path, std::strerror(errno)));
  map_ = static_cast<const uint8_t*>(map);

  auto fail = [&](const std::string& why) {
    ::munmap(const_cast<uint8_t*>(map_), map_size_);
    map_ = nullptr;
    throw DataError(fmt::format("teacher cache '{}': {}", path, why));
  };
  if (std::memcmp(map_, kMagic, 8) != 0) fail("not a teacher cache (bad magic)");
  uint64_t length = 0;
  std::memcpy(&length, map_ + 8, sizeof(length));
  if (length == 0 || length > kMaxHeader || 16 + length > map_size_) fail("corrupt header length");
  try {
    header_ = from_json(nlohmann::json::parse(map_ + 16, map_ + 16 + length));
  } catch (const std::exception& e) {
    fail(fmt::format("corrupt header ({})", e.what()));
  }
  if (header_.batch_size <= 0 || header_.steps <= 0 || header_.entries.empty()) fail("empty schedule");
  for (const auto& e : header_.entries)
    for (auto d : e.shape)
      if (d <= 0 || d > (int64_t(1) << 20)) fail(fmt::format("entry '{}' has a bad shape", e.name));
  data_offset_ = align64(16 + length);
  const uint64_t expected = data_offset_ + static_cast<uint64_t>(header_.steps) * header_.block_bytes() +
                            static_cast<uint64_t>(header_.steps) * 4 + 8;
  if (expected != map_size_)
    fail(fmt::format("size {} bytes, the header implies {} (truncated or corrupt)", map_size_, expected));
  if (std::memcmp(map_ + map_size_ - 8, kEndMagic, 8) != 0) fail("bad end marker");
  // The blocks are read in step order, once each: tell the kernel.
  ::madvise(const_cast<uint8_t*>(map_), map_size_, MADV_SEQUENTIAL);
}

CachedTeacher::~CachedTeacher() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), map_size_);
}

ModelOutput CachedTeacher::outputs(const Batch& batch) {
  const int64_t step = batch.step;
  const int64_t b = header_.batch_size;
  if (step < 0 || step >= header_.steps)
    throw Error(fmt::format("teacher cache '{}' holds steps 0..{}; asked for step {}", path_,
                            header_.steps - 1, step));
  if (batch.index.numel() != b)
    throw Error(fmt::format("teacher cache '{}' holds batches of {}, got {}", path_, b, batch.index.numel()));
  const int64_t block_bytes = header_.block_bytes();
  const uint8_t* block = map_ + data_offset_ + static_cast<size_t>(step) * block_bytes;
  uint32_t stored = 0;
  std::memcpy(&stored, map_ + data_offset_ + header_.steps * block_bytes + step * 4, 4);
  if (crc32_z(0L, block, static_cast<size_t>(block_bytes)) != stored)
    throw DataError(fmt::format("teacher cache '{}': block of step {} fails its checksum", path_, step));
  auto index = batch.index.to(torch::kInt64).contiguous();
  if (std::memcmp(block, index.data_ptr<int64_t>(), b * sizeof(int64_t)) != 0)
    throw Error(fmt::format("teacher cache '{}': step {} holds other samples than this run's batch "
                            "(built for another seed or data); rebuild it for this recipe", path_, step));
  const uint8_t* cursor = block + b * sizeof(int64_t);
  ModelOutput out;
  out.features.resize(header_.stages.size());
  for (const auto& e : header_.entries) {
    std::vector<int64_t> sizes{b};
    sizes.insert(sizes.end(), e.shape.begin(), e.shape.end());
    // from_blob does not copy; the float conversion does, so the map stays read-only.
    auto view = torch::from_blob(const_cast<uint8_t*>(cursor), sizes, torch::kHalf);
    auto values = view.to(torch::kFloat);
    cursor += view.numel() * 2;
    if (e.name == "logits") out.logits = values;
    else if (e.name == "aux_logits") out.aux_logits = values;
    else if (e.name == "embedding") out.embedding = values;
    else {
      int64_t stage = -1;
      if (std::sscanf(e.name.c_str(), "features[%ld]", &stage) != 1 || stage < 0 ||
          stage >= static_cast<int64_t>(out.features.size()))
        throw DataError(fmt::format("teacher cache '{}': unknown entry '{}'", path_, e.name));
      out.features[stage] = values;
    }
  }
  return out;
}

void CachedTeacher::check_compatible(const Recipe& recipe, const TeacherReads& reads) const {
  auto refuse = [&](const std::string& what) {
    throw ConfigError(fmt::format("config key 'teacher.path': cache '{}' {}; rebuild it with "
                                  "`distill cache-teacher` for this recipe", path_, what));
  };
  if (header_.seed != recipe.seed)
    refuse(fmt::format("was built for seed {}, the run uses {}", header_.seed, recipe.seed));
  if (header_.batch_size != recipe.train.batch_size)
    refuse(fmt::format("holds batches of {}, the run uses {}", header_.batch_size, recipe.train.batch_size));
  if (header_.steps < recipe.train.steps)
    refuse(fmt::format("holds {} steps, the run needs {}", header_.steps, recipe.train.steps));
  if (header_.data != data_block_yaml(recipe))
    refuse(fmt::format("was built for data {}, the run uses {}", header_.data, data_block_yaml(recipe)));
  auto has = [&](const std::string& name) {
    for (const auto& e : header_.entries)
      if (e.name == name) return true;
    return false;
  };
  // aux_logits and embedding are left out: a teacher may lack them, and a distiller that reads
  // a missing one says so itself, exactly as with the online teacher.
  std::vector<std::string> needed;
  if (reads.logits) needed.push_back("logits");
  for (int64_t i = 0; i < static_cast<int64_t>(header_.stages.size()); ++i)
    if (reads.reads_stage(i)) needed.push_back(stage_entry_name(i));
  for (const auto& name : needed)
    if (!has(name)) refuse(fmt::format("lacks the teacher's {}, which the distillers read", name));
}

}  // namespace distillery

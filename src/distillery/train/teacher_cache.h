// Teacher-output cache: the teacher's outputs for every batch of a training schedule,
// computed once and memory-mapped by later distillation runs.
//
// Why a fixed schedule: the loader is a pure function of (data, seed, batch size, step), so
// the cache stores the outputs for exactly the augmented views a run with that schedule sees.
// Cached distillation then equals online distillation up to fp16 rounding, at the price of one
// cache per seed and batch size (every method of a comparison shares it).
//
// File layout (little-endian): "DSTLTCH1", u64 header length, JSON header, zero padding to a
// 64-byte boundary, then one block per step (the batch's int64 sample indices, then each
// cached output as fp16 [B, ...]), then one CRC-32 per block and "DSTLTEND".
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "distillery/distill/distiller.h"
#include "distillery/train/recipe.h"
#include "distillery/train/teacher_source.h"

namespace distillery {

struct TeacherCacheEntry {
  std::string name;            // "logits", "aux_logits", "embedding" or "features[i]"
  std::vector<int64_t> shape;  // per sample
};

struct TeacherCacheHeader {
  std::string teacher_model;
  int64_t num_classes = 0;
  std::vector<StageSpec> stages;  // all of the teacher's stages (the distillers' context)
  // The schedule the cache was built for.
  uint64_t seed = 0;
  int64_t batch_size = 0;
  int64_t steps = 0;
  int64_t train_size = 0;
  std::string data;               // the recipe's `data:` block, as YAML
  std::vector<TeacherCacheEntry> entries;

  int64_t block_bytes() const;
};

// Writes a cache step by step: to `path`.tmp, renamed into place by commit() (a crash never
// leaves a partial cache under the real name).
class TeacherCacheWriter {
 public:
  // `header` without entries: the first append() fixes them from the outputs `reads` selects.
  TeacherCacheWriter(std::string path, TeacherCacheHeader header, TeacherReads reads);
  ~TeacherCacheWriter();
  TeacherCacheWriter(const TeacherCacheWriter&) = delete;
  TeacherCacheWriter& operator=(const TeacherCacheWriter&) = delete;

  void append(const Batch& batch, const ModelOutput& teacher_outputs);
  void commit();  // throws unless exactly header.steps blocks were appended

 private:
  struct File;
  std::unique_ptr<File> file_;
  TeacherCacheHeader header_;
  TeacherReads reads_;
  std::vector<uint32_t> checksums_;
  std::vector<char> block_;
};

// Runs the recipe's (online) teacher over `steps` batches of the recipe's training schedule
// and writes what its distillers read (`everything`: all outputs) to `path`, atomically.
void build_teacher_cache(const Recipe& recipe, const std::string& path, int64_t steps,
                         bool everything = false);

// Reads a cache through a read-only memory map; every block's checksum and sample indices are
// checked when it is used.
class CachedTeacher : public TeacherSource {
 public:
  explicit CachedTeacher(const std::string& path);
  ~CachedTeacher() override;
  CachedTeacher(const CachedTeacher&) = delete;
  CachedTeacher& operator=(const CachedTeacher&) = delete;

  ModelOutput outputs(const Batch& batch) override;
  std::vector<StageSpec> stages() const override { return header_.stages; }
  int64_t num_classes() const override { return header_.num_classes; }
  void check_compatible(const Recipe& recipe, const TeacherReads& reads) const override;
  const TeacherCacheHeader& header() const { return header_; }

 private:
  std::string path_;
  TeacherCacheHeader header_;
  const uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
  size_t data_offset_ = 0;
};

}  // namespace distillery

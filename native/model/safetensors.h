// safetensors.h — reading and writing the safetensors format (Hugging Face), and sharded
// checkpoints described by model.safetensors.index.json.
//
// Format: 8-byte little-endian u64 N, then N bytes of UTF-8 JSON (must start with '{',
// may be padded with spaces) mapping tensor name -> {dtype, shape, data_offsets:[b, e]}
// plus an optional "__metadata__" {str: str}; then the data section. Offsets are relative
// to the data section. As in the reference reader (huggingface/safetensors tensor.rs),
// the ranges, sorted by offset, must tile the data section exactly: no gaps, no overlaps,
// nothing after the last tensor (this keeps polyglot files out).
//
// The reader validates everything up front and throws zeroth::Error(ZEROTH_E_FORMAT)
// naming the file, the tensor and the broken rule. The file is memory-mapped read-only
// (MAP_PRIVATE); the mapping lives as long as the SafetensorsFile or any TensorView
// taken from it. Loading a tensor copies (and converts) its bytes into a zeroth Tensor.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace zeroth::safetensors {

// Every dtype the format defines. Ours: loadable by zeroth. The rest are listed and
// refused with E_UNSUPPORTED when loaded.
enum class FileDtype {
  BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64, C64,
  F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ, F4, F6_E2M3, F6_E3M2,
};

struct FileDtypeTraits {
  FileDtype dtype;
  const char* name;        // as written in the header: "F32", "BF16", ...
  int bits;                // bits per element (F4: 4, F6: 6)
  bool loadable;           // zeroth can load it
  zeroth_dtype load_as;    // the zeroth dtype it loads as by default (when loadable)
};

const FileDtypeTraits& file_dtype_traits(FileDtype d);
bool file_dtype_from_name(const std::string& name, FileDtype* out);
// The safetensors dtype a zeroth dtype is written as; throws E_UNSUPPORTED for int4.
FileDtype file_dtype_for(zeroth_dtype d);

// Largest header accepted (the reference reader's limit).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct TensorInfo {
  std::string name;
  FileDtype dtype;
  Shape shape;
  int64_t numel;
  uint64_t begin;  // byte range in the data section, [begin, end)
  uint64_t end;
};

class Mapping;  // a read-only memory map of a whole file
class SafetensorsFile;

// A tensor's bytes inside a file; holding it keeps the file and its mapping alive.
struct TensorView {
  std::shared_ptr<const SafetensorsFile> file;
  const TensorInfo* info;  // owned by `file`
  const uint8_t* bytes;    // info->end - info->begin bytes, little-endian, unaligned
};

class SafetensorsFile : public std::enable_shared_from_this<SafetensorsFile> {
 public:
  // Maps and validates `path`. E_IO when it cannot be opened, E_FORMAT when malformed.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  // Validates an in-memory file image (used by tests and fuzzing; copies nothing,
  // `bytes` must outlive the object). `label` names it in messages.
  static std::shared_ptr<SafetensorsFile> from_memory(const uint8_t* bytes, size_t size, const std::string& label);

  const std::string& path() const { return path_; }
  // Tensors in data-offset order.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const TensorInfo* find(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // E_INVALID_ARG when absent
  uint64_t data_bytes() const { return data_size_; }

  TensorView view(const std::string& name) const;
  // A new tensor holding the named tensor converted to `dtype` on `device`.
  // Conversions: the file dtype loads as its load_as dtype (I64 -> i32 with a range check,
  // I16 -> i32, BOOL -> u8 checking 0/1), then convert_host() turns it into `dtype`.
  TensorPtr load(const std::string& name, zeroth_dtype dtype, zeroth_device device = {ZEROTH_DEVICE_CPU, 0}) const;
  TensorPtr load(const std::string& name) const;  // in its load_as dtype, on the CPU

 private:
  SafetensorsFile() = default;
  void parse(const uint8_t* bytes, size_t size);

  std::string path_;
  std::shared_ptr<const Mapping> mapping_;
  const uint8_t* data_ = nullptr;  // start of the data section
  uint64_t data_size_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

// A checkpoint: one .safetensors file, or the shards named by model.safetensors.index.json.
class Checkpoint {
 public:
  // `path` is a .safetensors file, an *.index.json file, or a directory holding
  // model.safetensors.index.json or model.safetensors (the index wins when both exist).
  static std::shared_ptr<Checkpoint> open(const std::string& path);

  struct Entry {
    const TensorInfo* info;
    const SafetensorsFile* file;
  };
  // All tensors, sorted by name.
  const std::vector<Entry>& tensors() const { return entries_; }
  const Entry* find(const std::string& name) const;
  // The metadata of a single file, or the index's "metadata" object (string values only;
  // numbers such as total_size are written in decimal).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::vector<std::shared_ptr<SafetensorsFile>>& shards() const { return shards_; }

  TensorPtr load(const std::string& name, zeroth_dtype dtype, zeroth_device device = {ZEROTH_DEVICE_CPU, 0}) const;
  TensorPtr load(const std::string& name) const;

 private:
  void sort_entries();
  std::vector<std::shared_ptr<SafetensorsFile>> shards_;
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Writes `tensors` (name -> tensor, any device, not int4) and `metadata` to `path` in a
// form every safetensors reader accepts: header sorted by name, offsets contiguous in that
// order, header padded with spaces to a multiple of 8, little-endian data. The file is
// written beside `path` under a temporary name and renamed over it, so readers never see
// a half-written file and an existing file mapped by a reader is not truncated.
void write_file(const std::string& path, const std::vector<std::pair<std::string, TensorPtr>>& tensors,
                const std::map<std::string, std::string>& metadata = {});

// The exact bytes write_file() would write (header and data), for tests.
std::vector<uint8_t> serialize(const std::vector<std::pair<std::string, TensorPtr>>& tensors,
                               const std::map<std::string, std::string>& metadata = {});

}  // namespace zeroth::safetensors

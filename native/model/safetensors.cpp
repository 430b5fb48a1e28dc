// safetensors.cpp — the dtype table, the validating reader and tensor loading.
// (Sharded checkpoints: safetensors_index.cpp; the writer: safetensors_write.cpp.)
#include "safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/errors.h"
#include "core/parallel.h"
#include "json.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; this reader copies bytes as they are");

namespace zeroth::safetensors {

// ---- dtype table -----------------------------------------------------------------------------

namespace {
constexpr zeroth_dtype kNone = ZEROTH_DTYPE_COUNT;
const FileDtypeTraits kDtypes[] = {
    {FileDtype::BOOL, "BOOL", 8, true, ZEROTH_U8},
    {FileDtype::U8, "U8", 8, true, ZEROTH_U8},
    {FileDtype::I8, "I8", 8, true, ZEROTH_I8},
    {FileDtype::I16, "I16", 16, true, ZEROTH_I32},
    {FileDtype::U16, "U16", 16, false, kNone},
    {FileDtype::F16, "F16", 16, true, ZEROTH_F16},
    {FileDtype::BF16, "BF16", 16, true, ZEROTH_BF16},
    {FileDtype::I32, "I32", 32, true, ZEROTH_I32},
    {FileDtype::U32, "U32", 32, false, kNone},
    {FileDtype::F32, "F32", 32, true, ZEROTH_F32},
    {FileDtype::F64, "F64", 64, true, ZEROTH_F64},
    {FileDtype::I64, "I64", 64, true, ZEROTH_I32},
    {FileDtype::U64, "U64", 64, false, kNone},
    {FileDtype::C64, "C64", 64, false, kNone},
    {FileDtype::F8_E5M2, "F8_E5M2", 8, false, kNone},
    {FileDtype::F8_E4M3, "F8_E4M3", 8, false, kNone},
    {FileDtype::F8_E8M0, "F8_E8M0", 8, false, kNone},
    {FileDtype::F8_E4M3FNUZ, "F8_E4M3FNUZ", 8, false, kNone},
    {FileDtype::F8_E5M2FNUZ, "F8_E5M2FNUZ", 8, false, kNone},
    {FileDtype::F4, "F4", 4, false, kNone},
    {FileDtype::F6_E2M3, "F6_E2M3", 6, false, kNone},
    {FileDtype::F6_E3M2, "F6_E3M2", 6, false, kNone},
};
}  // namespace

const FileDtypeTraits& file_dtype_traits(FileDtype d) {
  for (const auto& t : kDtypes)
    if (t.dtype == d) return t;
  fail(ZEROTH_E_INTERNAL, "file_dtype_traits: unknown FileDtype value");
}

bool file_dtype_from_name(const std::string& name, FileDtype* out) {
  for (const auto& t : kDtypes)
    if (name == t.name) {
      *out = t.dtype;
      return true;
    }
  return false;
}

FileDtype file_dtype_for(zeroth_dtype d) {
  switch (d) {
    case ZEROTH_F64: return FileDtype::F64;
    case ZEROTH_F32: return FileDtype::F32;
    case ZEROTH_F16: return FileDtype::F16;
    case ZEROTH_BF16: return FileDtype::BF16;
    case ZEROTH_I32: return FileDtype::I32;
    case ZEROTH_I8: return FileDtype::I8;
    case ZEROTH_U8: return FileDtype::U8;
    default:
      fail(ZEROTH_E_UNSUPPORTED, std::string("safetensors has no dtype for zeroth dtype '") + dtype_traits(d).name +
                                     "'; write int4 weights as their u8 codes and f32/f16 scales instead");
  }
}

// ---- the memory map --------------------------------------------------------------------------

class Mapping {
 public:
  explicit Mapping(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(ZEROTH_E_IO, "cannot open '" + path + "': " + std::strerror(errno));
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      const int e = errno;
      ::close(fd);
      fail(ZEROTH_E_IO, "cannot stat '" + path + "': " + std::strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      fail(ZEROTH_E_IO, "'" + path + "' is not a regular file");
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {  // mmap of length 0 is an error; an empty file is caught by the parser
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        const int e = errno;
        ::close(fd);
        fail(ZEROTH_E_IO, "cannot memory-map '" + path + "': " + std::strerror(e));
      }
      data_ = static_cast<const uint8_t*>(p);
    }
    ::close(fd);  // the mapping keeps the file's pages reachable
  }
  ~Mapping() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// ---- header validation -----------------------------------------------------------------------

namespace {

std::string q(const std::string& s) { return json::quote(s); }

// Reads a non-negative JSON integer that fits in int64 (shapes) or uint64 (offsets).
bool as_u64(const json::Value& v, uint64_t* out) {
  if (!v.is_number() || !v.is_uint) return false;
  *out = v.uint_value;
  return true;
}

}  // namespace

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto map = std::make_shared<const Mapping>(path);
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->mapping_ = map;
  f->parse(map->data(), map->size());
  return f;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::from_memory(const uint8_t* bytes, size_t size,
                                                              const std::string& label) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = label;
  f->parse(bytes, size);
  return f;
}

void SafetensorsFile::parse(const uint8_t* bytes, size_t size) {
  const std::string& file = path_;
  auto bad = [&](const std::string& what) -> void { fail(ZEROTH_E_FORMAT, file + ": " + what); };
  const std::string not_st = " (is this a safetensors file?)";

  if (size < 8)
    bad("the file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length" + not_st);
  uint64_t n = 0;
  std::memcpy(&n, bytes, 8);
  if (n > kMaxHeaderBytes)
    bad("header length " + std::to_string(n) + " exceeds the " + std::to_string(kMaxHeaderBytes) + "-byte limit" +
        not_st);
  if (n > size - 8)
    bad("header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(size) +
        " bytes); the file is truncated or not safetensors");
  const std::string_view header(reinterpret_cast<const char*>(bytes + 8), static_cast<size_t>(n));
  if (header.empty() || header[0] != '{') bad("the header must begin with '{'" + not_st);
  size_t bad_at = 0;
  if (!json::valid_utf8(header, &bad_at)) bad("the header is not valid UTF-8 (byte " + std::to_string(bad_at) + ")");
  const json::Value root = json::parse(header, file + " header");
  if (!root.is_object()) bad("the header must be a JSON object");

  data_ = bytes + 8 + n;
  data_size_ = size - 8 - n;

  for (const auto& [name, v] : root.object) {
    if (name == "__metadata__") {
      if (!v.is_object()) bad("__metadata__ must be an object of strings, not " + std::string(json::type_name(v.type)));
      for (const auto& [k, s] : v.object) {
        if (!s.is_string()) bad("__metadata__ value " + q(k) + " must be a string, not " + json::type_name(s.type));
        metadata_[k] = s.string;
      }
      continue;
    }
    const std::string where = "tensor " + q(name) + ": ";
    if (!v.is_object()) bad(where + "entry must be an object, not " + json::type_name(v.type));
    // Unknown members are ignored, as the reference reader does.
    const json::Value* dt = v.find("dtype");
    const json::Value* sh = v.find("shape");
    const json::Value* off = v.find("data_offsets");
    if (!dt || !sh || !off) bad(where + "entry needs \"dtype\", \"shape\" and \"data_offsets\"");
    TensorInfo info;
    info.name = name;
    if (!dt->is_string()) bad(where + "dtype must be a string");
    if (!file_dtype_from_name(dt->string, &info.dtype)) bad(where + "unknown dtype " + q(dt->string));
    if (!sh->is_array()) bad(where + "shape must be an array of non-negative integers");
    uint64_t numel = 1;
    bool overflow = false;
    for (size_t i = 0; i < sh->array.size(); ++i) {
      uint64_t d;
      if (!as_u64(sh->array[i], &d) || d > static_cast<uint64_t>(INT64_MAX))
        bad(where + "shape[" + std::to_string(i) + "] must be a non-negative integer");
      info.shape.push_back(static_cast<int64_t>(d));
      if (d != 0 && numel > static_cast<uint64_t>(INT64_MAX) / d) overflow = true;
      else numel *= d;
    }
    // A zero dim makes the tensor empty however large the others are; otherwise an
    // overflowing product can describe no real tensor.
    if (std::find(info.shape.begin(), info.shape.end(), 0) != info.shape.end()) numel = 0, overflow = false;
    if (overflow) bad(where + "the product of shape " + shape_string(info.shape) + " overflows 64 bits");
    info.numel = static_cast<int64_t>(numel);
    if (!off->is_array() || off->array.size() != 2 || !as_u64(off->array[0], &info.begin) ||
        !as_u64(off->array[1], &info.end))
      bad(where + "data_offsets must be [begin, end], two non-negative integers");
    const int bits = file_dtype_traits(info.dtype).bits;
    if (numel > UINT64_MAX / static_cast<uint64_t>(bits))
      bad(where + "the byte size of shape " + shape_string(info.shape) + " overflows 64 bits");
    const uint64_t nbits = numel * static_cast<uint64_t>(bits);
    if (nbits % 8 != 0) bad(where + std::to_string(numel) + " elements of " + dt->string + " do not fill whole bytes");
    if (info.begin > info.end)
      bad(where + "data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
          "] has begin after end");
    if (info.end - info.begin != nbits / 8)
      bad(where + "shape " + shape_string(info.shape) + " of " + dt->string + " needs " + std::to_string(nbits / 8) +
          " bytes but data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) + "] hold " +
          std::to_string(info.end - info.begin));
    if (info.end > data_size_)
      bad(where + "data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
          "] run past the data section (" + std::to_string(data_size_) + " bytes); the file is truncated");
    tensors_.push_back(std::move(info));
  }

  // The ranges, in offset order, must tile the data section exactly (reference rule).
  std::sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected = 0;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const TensorInfo& t = tensors_[i];
    if (t.begin < expected)
      bad("tensor " + q(t.name) + ": byte range [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
          ") overlaps tensor " + q(tensors_[i - 1].name));
    if (t.begin > expected)
      bad("tensor " + q(t.name) + ": the data section has a hole of " + std::to_string(t.begin - expected) +
          " bytes before it (byte " + std::to_string(expected) + "); ranges must cover the data section");
    expected = t.end;
  }
  if (expected != data_size_)
    bad("the data section has " + std::to_string(data_size_ - expected) +
        " bytes after the last tensor; ranges must cover the data section exactly");
  for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  const TensorInfo* t = find(name);
  ZCHECK(t, ZEROTH_E_INVALID_ARG, path_ + " has no tensor " + q(name));
  return *t;
}

TensorView SafetensorsFile::view(const std::string& name) const {
  const TensorInfo& t = info(name);
  return TensorView{shared_from_this(), &t, data_ + t.begin};
}

// ---- loading ---------------------------------------------------------------------------------

namespace {

// Per-element copy loops run on the pool in chunks: big tensors fault their pages in
// from the mapping in parallel.
constexpr int64_t kGrain = 1 << 16;

void check_and_copy_bool(const uint8_t* src, uint8_t* dst, int64_t n, const std::string& where) {
  for (int64_t i = 0; i < n; ++i)
    ZCHECK(src[i] <= 1, ZEROTH_E_FORMAT,
           where + ": BOOL element " + std::to_string(i) + " is " + std::to_string(src[i]) + "; booleans are 0 or 1");
  std::memcpy(dst, src, static_cast<size_t>(n));
}

void narrow_i64(const uint8_t* src, int32_t* dst, int64_t n, const std::string& where) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      int64_t v;
      std::memcpy(&v, src + 8 * i, 8);
      ZCHECK(v >= INT32_MIN && v <= INT32_MAX, ZEROTH_E_DTYPE,
             where + ": I64 element " + std::to_string(i) + " is " + std::to_string(v) +
                 ", outside the i32 range zeroth loads I64 into");
      dst[i] = static_cast<int32_t>(v);
    }
  });
}

void widen_i16(const uint8_t* src, int32_t* dst, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      int16_t v;
      std::memcpy(&v, src + 2 * i, 2);
      dst[i] = v;
    }
  });
}

}  // namespace

TensorPtr SafetensorsFile::load(const std::string& name) const {
  const TensorInfo& t = info(name);
  const FileDtypeTraits& tr = file_dtype_traits(t.dtype);
  const std::string where = path_ + ": tensor " + q(name);
  ZCHECK(tr.loadable, ZEROTH_E_UNSUPPORTED,
         where + " has dtype " + tr.name +
             ", which zeroth cannot load; convert the checkpoint to F32, BF16 or F16 (e.g. with PyTorch) first");
  TensorPtr out = tensor_empty(tr.load_as, t.shape, zeroth_device{ZEROTH_DEVICE_CPU, 0});
  const uint8_t* src = data_ + t.begin;
  const int64_t n = t.numel;
  switch (t.dtype) {
    case FileDtype::BOOL: check_and_copy_bool(src, out->as<uint8_t>(), n, where); break;
    case FileDtype::I64: narrow_i64(src, out->as<int32_t>(), n, where); break;
    case FileDtype::I16: widen_i16(src, out->as<int32_t>(), n); break;
    default: {  // same layout in the file and in memory: a plain copy
      const int64_t bytes = static_cast<int64_t>(t.end - t.begin);
      uint8_t* dst = out->as<uint8_t>();
      parallel_for(bytes, 1 << 20, [&](int64_t b, int64_t e) {
        std::memcpy(dst + b, src + b, static_cast<size_t>(e - b));
      });
    }
  }
  return out;
}

TensorPtr SafetensorsFile::load(const std::string& name, zeroth_dtype dtype, zeroth_device device) const {
  ZCHECK(dtype != ZEROTH_INT4, ZEROTH_E_DTYPE,
         "tensor " + q(name) + " cannot be loaded as int4; load it as f32 and quantize it with zeroth.quantize");
  dtype_traits(dtype);  // E_DTYPE for an out-of-range value
  const TensorInfo& ti = info(name);
  const FileDtypeTraits& tr = file_dtype_traits(ti.dtype);
  const uint8_t* src = data_ + ti.begin;
  const bool same_layout = tr.loadable && ti.dtype != FileDtype::BOOL && ti.dtype != FileDtype::I64 &&
                           ti.dtype != FileDtype::I16;
  // Converting straight from the mapping skips an intermediate tensor (for bf16 -> f32 that
  // is a third of the memory traffic). convert_host reads typed pointers, so only when the
  // bytes are aligned for their type (always, for files whose header length is a multiple of 8).
  if (same_layout && tr.load_as != dtype && device.type == ZEROTH_DEVICE_CPU &&
      reinterpret_cast<uintptr_t>(src) % dtype_traits(tr.load_as).size == 0) {
    TensorPtr out = tensor_empty(dtype, ti.shape, device);
    convert_host(tr.load_as, src, dtype, out->data(), ti.numel);
    return out;
  }
  TensorPtr t = load(name);
  if (t->dtype == dtype && device.type == ZEROTH_DEVICE_CPU) return t;
  return tensor_copy(*t, dtype, device);
}

}  // namespace zeroth::safetensors

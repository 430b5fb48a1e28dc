// safetensors_write.cpp — the writer. Layout as the reference writer makes it, except
// that tensors are ordered by name only (the reference sorts by dtype alignment first;
// readers accept any order whose ranges tile the data section).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/errors.h"
#include "json.h"
#include "safetensors.h"

namespace zeroth::safetensors {

namespace {

struct Layout {
  std::string header;  // padded JSON, a multiple of 8 bytes
  std::vector<std::pair<std::string, TensorPtr>> sorted;
  uint64_t data_bytes = 0;
};

Layout plan(const std::vector<std::pair<std::string, TensorPtr>>& tensors,
            const std::map<std::string, std::string>& metadata) {
  Layout l;
  l.sorted = tensors;
  std::sort(l.sorted.begin(), l.sorted.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 0; i < l.sorted.size(); ++i) {
    const auto& [name, t] = l.sorted[i];
    ZCHECK(t, ZEROTH_E_INVALID_ARG, "tensor " + json::quote(name) + " is null");
    ZCHECK(name != "__metadata__", ZEROTH_E_INVALID_ARG,
           "\"__metadata__\" is reserved by the safetensors format; rename that tensor");
    ZCHECK(json::valid_utf8(name), ZEROTH_E_INVALID_ARG, "tensor names must be valid UTF-8");
    ZCHECK(i == 0 || l.sorted[i - 1].first != name, ZEROTH_E_INVALID_ARG,
           "tensor name " + json::quote(name) + " is given twice");
  }
  for (const auto& [k, v] : metadata)
    ZCHECK(json::valid_utf8(k) && json::valid_utf8(v), ZEROTH_E_INVALID_ARG, "metadata keys and values must be valid UTF-8");

  std::string h = "{";
  if (!metadata.empty()) {
    h += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {  // std::map: sorted by key
      if (!first) h += ',';
      first = false;
      h += json::quote(k) + ':' + json::quote(v);
    }
    h += '}';
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : l.sorted) {
    const FileDtype fd = file_dtype_for(t->dtype);  // E_UNSUPPORTED for int4
    const uint64_t n = t->nbytes();
    if (h.size() > 1) h += ',';
    h += json::quote(name) + ":{\"dtype\":\"" + file_dtype_traits(fd).name + "\",\"shape\":[";
    for (size_t d = 0; d < t->shape.size(); ++d) {
      if (d) h += ',';
      h += std::to_string(t->shape[d]);
    }
    h += "],\"data_offsets\":[" + std::to_string(offset) + ',' + std::to_string(offset + n) + "]}";
    offset += n;
  }
  h += '}';
  h.append((8 - h.size() % 8) % 8, ' ');  // pad so the data section starts 8-byte aligned
  ZCHECK(h.size() <= kMaxHeaderBytes, ZEROTH_E_INVALID_ARG,
         "the header would be " + std::to_string(h.size()) + " bytes, over the format's " +
             std::to_string(kMaxHeaderBytes) + "-byte limit; split the tensors over several files");
  l.header = std::move(h);
  l.data_bytes = offset;
  return l;
}

// The bytes of a tensor on the host: its own storage on the CPU, a copy otherwise.
const uint8_t* host_bytes(const Tensor& t, std::vector<uint8_t>& staging) {
  if (t.on_cpu()) return static_cast<const uint8_t*>(t.data());
  staging.resize(t.nbytes());
  tensor_to_host(t, staging.data(), staging.size());
  return staging.data();
}

class TempFile {
 public:
  explicit TempFile(const std::string& final_path) : final_(final_path) {
    static std::atomic<uint64_t> counter{0};
    temp_ = final_path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
    fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ < 0) fail(ZEROTH_E_IO, "cannot create '" + temp_ + "' to write '" + final_ + "': " + std::strerror(errno));
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(temp_.c_str());
  }
  void write(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    while (n > 0) {
      const ssize_t w = ::write(fd_, b, std::min<size_t>(n, size_t{1} << 30));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) fail(ZEROTH_E_IO, "cannot write '" + temp_ + "': " + std::strerror(errno));
      b += w;
      n -= static_cast<size_t>(w);
    }
  }
  // fsync before rename: after a crash the final name holds either the old or the whole new file.
  void commit() {
    if (::fsync(fd_) != 0) fail(ZEROTH_E_IO, "cannot flush '" + temp_ + "': " + std::strerror(errno));
    const int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) fail(ZEROTH_E_IO, "cannot close '" + temp_ + "': " + std::strerror(errno));
    if (::rename(temp_.c_str(), final_.c_str()) != 0)
      fail(ZEROTH_E_IO, "cannot rename '" + temp_ + "' to '" + final_ + "': " + std::strerror(errno));
    committed_ = true;
  }

 private:
  std::string final_, temp_;
  int fd_ = -1;
  bool committed_ = false;
};

void put_u64_le(uint8_t* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
}

}  // namespace

std::vector<uint8_t> serialize(const std::vector<std::pair<std::string, TensorPtr>>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  const Layout l = plan(tensors, metadata);
  std::vector<uint8_t> out(8 + l.header.size());
  put_u64_le(out.data(), l.header.size());
  std::memcpy(out.data() + 8, l.header.data(), l.header.size());
  out.reserve(out.size() + l.data_bytes);
  std::vector<uint8_t> staging;
  for (const auto& [name, t] : l.sorted) {
    const uint8_t* b = host_bytes(*t, staging);
    out.insert(out.end(), b, b + t->nbytes());
  }
  return out;
}

void write_file(const std::string& path, const std::vector<std::pair<std::string, TensorPtr>>& tensors,
                const std::map<std::string, std::string>& metadata) {
  const Layout l = plan(tensors, metadata);
  TempFile f(path);
  uint8_t len[8];
  put_u64_le(len, l.header.size());
  f.write(len, 8);
  f.write(l.header.data(), l.header.size());
  std::vector<uint8_t> staging;
  for (const auto& [name, t] : l.sorted) f.write(host_bytes(*t, staging), t->nbytes());
  f.commit();
}

}  // namespace zeroth::safetensors

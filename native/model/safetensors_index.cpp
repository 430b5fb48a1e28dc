// safetensors_index.cpp — checkpoints: one .safetensors file, or shards listed by
// model.safetensors.index.json ({"metadata": {...}, "weight_map": {tensor: shard file}}).
//
// Every shard is mapped once. The index and the shards must agree exactly: each name in
// weight_map is in the shard it names, and each tensor of a shard is listed for that
// shard; a disagreement means a half-copied or mixed-up download, so it is E_FORMAT.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/errors.h"
#include "json.h"
#include "safetensors.h"

namespace zeroth::safetensors {

namespace {

constexpr uint64_t kMaxIndexBytes = 100'000'000;

bool is_directory(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string read_small_file(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) fail(ZEROTH_E_IO, "cannot open '" + path + "': " + std::strerror(errno));
  if (static_cast<uint64_t>(st.st_size) > kMaxIndexBytes)
    fail(ZEROTH_E_FORMAT, path + ": " + std::to_string(st.st_size) + " bytes is too large for an index file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ZEROTH_E_IO, "cannot open '" + path + "': " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(ZEROTH_E_IO, "cannot read '" + path + "'");
  return ss.str();
}

// Shard names are file names relative to the index: no absolute paths and no "..", so
// an index cannot point the loader at files outside the checkpoint folder.
void check_shard_name(const std::string& index, const std::string& tensor, const std::string& shard) {
  bool ok = !shard.empty() && shard[0] != '/' && shard.find('\0') == std::string::npos;
  size_t start = 0;
  while (ok && start <= shard.size()) {
    size_t slash = shard.find('/', start);
    if (slash == std::string::npos) slash = shard.size();
    const std::string part = shard.substr(start, slash - start);
    if (part == ".." || part.empty()) ok = false;
    start = slash + 1;
  }
  if (!ok)
    fail(ZEROTH_E_FORMAT, index + ": weight_map maps " + json::quote(tensor) + " to " + json::quote(shard) +
                              ", which is not a file name inside the checkpoint folder");
}

std::string number_text(const json::Value& v) {
  if (v.is_int) return std::to_string(v.int_value);
  if (v.is_uint) return std::to_string(v.uint_value);
  std::ostringstream ss;
  ss.precision(17);
  ss << v.number;
  return ss.str();
}

}  // namespace

std::shared_ptr<Checkpoint> Checkpoint::open(const std::string& path) {
  std::string target = path;
  if (is_directory(path)) {
    const std::string dir = ends_with(path, "/") ? path : path + "/";
    if (exists(dir + "model.safetensors.index.json")) target = dir + "model.safetensors.index.json";
    else if (exists(dir + "model.safetensors")) target = dir + "model.safetensors";
    else
      fail(ZEROTH_E_IO, "'" + path + "' holds neither model.safetensors nor model.safetensors.index.json");
  }
  auto ck = std::make_shared<Checkpoint>();
  if (!ends_with(target, ".json")) {
    auto f = SafetensorsFile::open(target);
    ck->metadata_ = f->metadata();
    ck->shards_.push_back(f);
    for (const auto& t : f->tensors()) ck->entries_.push_back(Entry{&t, f.get()});
    ck->sort_entries();
    return ck;
  }

  const std::string text = read_small_file(target);
  size_t bad_at = 0;
  if (!json::valid_utf8(text, &bad_at))
    fail(ZEROTH_E_FORMAT, target + ": not valid UTF-8 (byte " + std::to_string(bad_at) + ")");
  const json::Value root = json::parse(text, target);
  if (!root.is_object()) fail(ZEROTH_E_FORMAT, target + ": an index must be a JSON object");
  const json::Value* map = root.find("weight_map");
  if (!map || !map->is_object())
    fail(ZEROTH_E_FORMAT, target + ": an index needs a \"weight_map\" object {tensor name: shard file}");
  if (const json::Value* meta = root.find("metadata")) {
    if (!meta->is_object()) fail(ZEROTH_E_FORMAT, target + ": \"metadata\" must be an object");
    // Metadata is informational (total_size, ...): scalars are kept as text, the rest skipped.
    for (const auto& [k, v] : meta->object) {
      if (v.is_string()) ck->metadata_[k] = v.string;
      else if (v.is_number()) ck->metadata_[k] = number_text(v);
      else if (v.is_bool()) ck->metadata_[k] = v.boolean ? "true" : "false";
    }
  }

  const size_t slash = target.rfind('/');
  const std::string dir = slash == std::string::npos ? std::string() : target.substr(0, slash + 1);
  std::map<std::string, std::shared_ptr<SafetensorsFile>> by_name;  // each shard opened once
  std::map<std::string, std::string> shard_of;  // weight_map as a lookup table
  for (const auto& [tensor, shard] : map->object) {
    if (!shard.is_string())
      fail(ZEROTH_E_FORMAT, target + ": weight_map value of " + json::quote(tensor) + " must be a file name string");
    check_shard_name(target, tensor, shard.string);
    shard_of[tensor] = shard.string;
    auto& f = by_name[shard.string];
    if (!f) {
      f = SafetensorsFile::open(dir + shard.string);
      ck->shards_.push_back(f);
    }
    const TensorInfo* info = f->find(tensor);
    if (!info)
      fail(ZEROTH_E_FORMAT, target + ": weight_map puts " + json::quote(tensor) + " in " + json::quote(shard.string) +
                                ", which has no such tensor; the checkpoint is incomplete or mixed up");
    ck->entries_.push_back(Entry{info, f.get()});
  }
  // The other direction: every tensor of a shard is listed, and listed for that shard.
  for (const auto& [shard_name, f] : by_name) {
    for (const auto& t : f->tensors()) {
      auto listed = shard_of.find(t.name);
      if (listed == shard_of.end() || listed->second != shard_name)
        fail(ZEROTH_E_FORMAT, target + ": shard " + json::quote(shard_name) + " holds tensor " + json::quote(t.name) +
                                  (listed != shard_of.end() ? " but weight_map puts it in " + json::quote(listed->second)
                                                            : " that weight_map does not list"));
    }
  }
  ck->sort_entries();
  return ck;
}

void Checkpoint::sort_entries() {
  std::sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) { return a.info->name < b.info->name; });
}

const Checkpoint::Entry* Checkpoint::find(const std::string& name) const {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), name,
                             [](const Entry& e, const std::string& n) { return e.info->name < n; });
  return it != entries_.end() && it->info->name == name ? &*it : nullptr;
}

TensorPtr Checkpoint::load(const std::string& name, zeroth_dtype dtype, zeroth_device device) const {
  const Entry* e = find(name);
  ZCHECK(e, ZEROTH_E_INVALID_ARG, "the checkpoint has no tensor " + json::quote(name));
  return e->file->load(name, dtype, device);
}

TensorPtr Checkpoint::load(const std::string& name) const {
  const Entry* e = find(name);
  ZCHECK(e, ZEROTH_E_INVALID_ARG, "the checkpoint has no tensor " + json::quote(name));
  return e->file->load(name);
}

}  // namespace zeroth::safetensors

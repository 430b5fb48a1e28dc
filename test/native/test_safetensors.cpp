// test_safetensors.cpp — the safetensors reader, writer and index, and the JSON parser.
//
// - round trip of every zeroth dtype through write_file / SafetensorsFile::open, with the
//   exact header bytes of a small file compared against a literal written here;
// - dtype conversions on load (bf16/f16 -> f32 against half.h-free reference decoders
//   written here, I64 -> i32 range check, I16, BOOL) and the refusal of F8 and friends;
// - every malformed-file rule gives E_FORMAT naming the file (and tensor where there is one);
// - a fuzz loop: thousands of random mutations / truncations of a valid file must each
//   either load or throw zeroth::Error (run it under -fsanitize=address as well);
// - sharded checkpoints through model.safetensors.index.json, and their consistency rules;
// - the shared fixtures (/work/shared/fixtures or $ZEROTH_FIXTURES) are listed and loaded.
//
// Prints "N passed, N failed" and exits non-zero on any failure.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/tensor.h"
#include "model/json.h"
#include "model/safetensors.h"
#include "check.h"

using namespace zeroth;
namespace st = zeroth::safetensors;

using namespace zeroth_test;

namespace {

struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) { return next() % n; }
};

const zeroth_device kCpu{ZEROTH_DEVICE_CPU, 0};

using Bytes = std::vector<uint8_t>;

// A file image from a header text and a data section, as a hand-written file would be.
Bytes image(const std::string& header, const Bytes& data) {
  Bytes out(8);
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

Bytes zeros(size_t n) { return Bytes(n, 0); }

// Runs fn; true if it threw zeroth::Error with `code` and a message containing every needle.
template <typename F>
bool throws(F&& fn, zeroth_status code, const std::vector<std::string>& needles, std::string* got = nullptr) {
  try {
    fn();
  } catch (const Error& e) {
    if (got) *got = std::string(status_name(e.code())) + ": " + e.what();
    if (e.code() != code) return false;
    for (const auto& n : needles)
      if (std::string(e.what()).find(n) == std::string::npos) return false;
    return true;
  } catch (const std::exception& e) {
    if (got) *got = std::string("other exception: ") + e.what();
    return false;
  }
  if (got) *got = "no error";
  return false;
}

// The named malformed image must be refused with E_FORMAT naming the label and the needles.
void expect_format(const std::string& label, const Bytes& bytes, std::vector<std::string> needles = {}) {
  needles.push_back(label);
  std::string got;
  // An exact-size heap copy, so that a read past the end is caught by ASan.
  const bool ok = throws(
      [&] {
        std::vector<uint8_t> copy(bytes);
        st::SafetensorsFile::from_memory(copy.data(), copy.size(), label);
      },
      ZEROTH_E_FORMAT, needles, &got);
  check(ok, "malformed '" + label + "' -> " + got);
}

std::string tmp_dir() {
  char tmpl[] = "/tmp/zeroth-st-XXXXXX";
  const char* d = mkdtemp(tmpl);
  if (!d) {
    std::perror("mkdtemp");
    std::exit(2);
  }
  return d;
}

Bytes read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

template <typename T>
TensorPtr make(zeroth_dtype dt, const Shape& shape, const std::vector<T>& v) {
  return tensor_from_host(dt, shape, kCpu, v.data(), v.size() * sizeof(T));
}

TensorPtr random_tensor(zeroth_dtype dt, const Shape& shape, Rng& rng) {
  TensorPtr t = tensor_empty(dt, shape, kCpu);
  auto* b = static_cast<uint8_t*>(t->data());
  for (size_t i = 0; i < t->nbytes(); ++i) b[i] = static_cast<uint8_t>(rng.next());
  return t;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype == b.dtype && a.shape == b.shape && a.nbytes() == b.nbytes() &&
         std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

// Reference decoders written from the IEEE / bfloat16 definitions, with ldexp.
double f16_ref(uint16_t h) {
  const int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
  double v = e == 0 ? std::ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : std::ldexp(1024 + m, e - 25);
  return s ? -v : v;
}
double bf16_ref(uint16_t h) {
  const int s = h >> 15, e = (h >> 7) & 255, m = h & 127;
  double v = e == 0 ? std::ldexp(m, -133) : e == 255 ? (m ? NAN : INFINITY) : std::ldexp(128 + m, e - 134);
  return s ? -v : v;
}

// ---- JSON -------------------------------------------------------------------------------------

void test_json() {
  const json::Value v = json::parse(
      R"( {"a": [1, -2, 3.5e2, 18446744073709551615, -9223372036854775808, 0, -0, 1e-400],
          "s": "x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00", "t": true, "f": false, "n": null, "o": {}} )",
      "json test");
  check(v.is_object() && v.object.size() == 6, "json: object with 6 members");
  const json::Value* a = v.find("a");
  check(a && a->array.size() == 8, "json: array of 8");
  if (a && a->array.size() == 8) {
    check(a->array[0].is_uint && a->array[0].uint_value == 1, "json: 1");
    check(a->array[1].is_int && !a->array[1].is_uint && a->array[1].int_value == -2, "json: -2");
    check(!a->array[2].is_int && a->array[2].number == 350.0, "json: 3.5e2 is a non-integer literal of value 350");
    check(a->array[3].is_uint && a->array[3].uint_value == UINT64_MAX && !a->array[3].is_int, "json: u64 max exact");
    check(a->array[4].is_int && a->array[4].int_value == INT64_MIN, "json: i64 min exact");
    check(a->array[6].is_uint && a->array[6].uint_value == 0, "json: -0 is integer zero");
    check(a->array[7].number == 0.0, "json: underflow to 0");
  }
  const json::Value* s = v.find("s");
  check(s && s->string == "x\"\\/\b\f\n\r\t\xC3\xA9\xF0\x9F\x98\x80", "json: escapes and surrogate pair");
  check(v.find("t")->boolean && !v.find("f")->boolean && v.find("n")->is_null(), "json: literals");

  const char* bad[] = {
      "",           "{",           "{\"a\":1,}",     "[1,]",         "{'a':1}",      "{\"a\" 1}",
      "01",         "1.",          ".5",             "1e",           "-",            "NaN",
      "Infinity",   "[1] x",       "\"\\x\"",        "\"\\ud800\"",  "\"\\udc00\"",  "\"a\nb\"",
      "{\"a\":1,\"a\":2}",         "tru",          "nul",          "/*c*/{}",      "1e999",
      "\"\\ud800\\u0041\"",        "\"\xC0\xAF\"", "\"\xED\xA0\x80\"", "\"\xF4\x90\x80\x80\"", "\"\xE2\x82\""};
  for (const char* b : bad)
    check(throws([&] { json::parse(b, "bad-json"); }, ZEROTH_E_FORMAT, {"bad-json"}),
          std::string("json: rejects ") + json::quote(b));
  check(throws([&] { json::parse(std::string(100000, '['), "deep"); }, ZEROTH_E_FORMAT, {"nesting"}),
        "json: deep nesting is refused, not a stack overflow");
  check(json::quote("a\"\\\n\x01z") == "\"a\\\"\\\\\\n\\u0001z\"", "json: quote escapes");
}

// ---- round trip -------------------------------------------------------------------------------

void test_roundtrip(const std::string& dir) {
  Rng rng{1};
  std::vector<std::pair<std::string, TensorPtr>> ts = {
      {"w.f32", random_tensor(ZEROTH_F32, {3, 5}, rng)},  {"w.f64", random_tensor(ZEROTH_F64, {7}, rng)},
      {"w.f16", random_tensor(ZEROTH_F16, {2, 3, 1}, rng)}, {"w.bf16", random_tensor(ZEROTH_BF16, {9}, rng)},
      {"ids", random_tensor(ZEROTH_I32, {2, 2}, rng)},     {"q.i8", random_tensor(ZEROTH_I8, {5}, rng)},
      {"b.u8", random_tensor(ZEROTH_U8, {3}, rng)},        {"scalar", random_tensor(ZEROTH_F32, {}, rng)},
      {"empty", random_tensor(ZEROTH_F32, {0, 4}, rng)},   {"\xC3\xA9t\xC3\xA9 \"q\"", random_tensor(ZEROTH_F32, {1}, rng)},
  };
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "line\nbreak \"quoted\""}};
  const std::string path = dir + "/round.safetensors";
  st::write_file(path, ts, meta);
  const Bytes file = read_bytes(path);
  check(file == st::serialize(ts, meta), "roundtrip: write_file writes exactly serialize()'s bytes");
  uint64_t n = 0;
  std::memcpy(&n, file.data(), 8);
  check(n % 8 == 0 && file[8] == '{', "roundtrip: header length is a multiple of 8 and starts with '{'");

  auto f = st::SafetensorsFile::open(path);
  check(f->tensors().size() == ts.size(), "roundtrip: tensor count");
  check(f->metadata() == meta, "roundtrip: metadata");
  // Offsets are contiguous in name order.
  std::vector<std::string> names;
  for (const auto& t : f->tensors()) names.push_back(t.name);
  check(std::is_sorted(names.begin(), names.end()), "roundtrip: data laid out in name order");
  for (const auto& [name, t] : ts) {
    const TensorPtr back = f->load(name);
    check(same_bytes(*t, *back), "roundtrip: tensor " + name + " comes back bit-exact");
    check(f->info(name).shape == t->shape, "roundtrip: shape of " + name);
  }
  // The mapping outlives the file object through a view.
  st::TensorView view = f->view("w.f32");
  const TensorPtr w = ts[0].second;
  f.reset();
  check(std::memcmp(view.bytes, w->data(), w->nbytes()) == 0, "view: bytes readable after the file object is dropped");

  // Exact bytes of a tiny file, written by hand from the format description.
  const std::string expect_header =
      R"({"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"U8","shape":[],"data_offsets":[8,9]}})";
  std::string padded = expect_header + std::string((8 - expect_header.size() % 8) % 8, ' ');
  Bytes expect = image(padded, {0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, 7});
  const Bytes got = st::serialize({{"b", make<uint8_t>(ZEROTH_U8, {}, {7})}, {"a", make<float>(ZEROTH_F32, {2}, {1.f, 2.f})}},
                                  {{"k", "v"}});
  check(got == expect, "writer: exact bytes of a small file (sorted, padded with spaces, little-endian)");
  check(st::serialize({}, {}) == image("{}      ", {}), "writer: an empty file is {} padded to 8");

  // Writer refusals.
  TensorPtr i4 = tensor_zeros(ZEROTH_INT4, {4}, kCpu);
  check(throws([&] { st::serialize({{"x", i4}}); }, ZEROTH_E_UNSUPPORTED, {"int4"}), "writer: int4 refused");
  check(throws([&] { st::serialize({{"x", w}, {"x", w}}); }, ZEROTH_E_INVALID_ARG, {"twice"}), "writer: duplicate name");
  check(throws([&] { st::serialize({{"__metadata__", w}}); }, ZEROTH_E_INVALID_ARG, {"reserved"}),
        "writer: __metadata__ name refused");
  check(throws([&] { st::serialize({{"\xff", w}}); }, ZEROTH_E_INVALID_ARG, {"UTF-8"}), "writer: invalid UTF-8 name");
  check(throws([&] { st::write_file(dir + "/no/such/dir/x.safetensors", {{"x", w}}); }, ZEROTH_E_IO, {"no/such/dir"}),
        "writer: unwritable path gives E_IO");

  // Atomic replace: a reader holding the old file keeps reading the old bytes.
  const std::string p2 = dir + "/replace.safetensors";
  st::write_file(p2, {{"x", make<float>(ZEROTH_F32, {1}, {1.f})}});
  auto old_file = st::SafetensorsFile::open(p2);
  st::write_file(p2, {{"x", make<float>(ZEROTH_F32, {1}, {2.f})}});
  check(old_file->load("x")->as<float>()[0] == 1.f, "writer: a mapped old file still reads its old data after rename");
  check(st::SafetensorsFile::open(p2)->load("x")->as<float>()[0] == 2.f, "writer: the new file has the new data");
  DIR* d = opendir(dir.c_str());
  bool stray = false;
  while (dirent* e = readdir(d)) stray |= std::string(e->d_name).find(".tmp-") != std::string::npos;
  closedir(d);
  check(!stray, "writer: no temporary file left behind");
}

// ---- conversions on load ------------------------------------------------------------------------

void test_conversions() {
  Rng rng{2};
  // bf16 and f16 -> f32 against the reference decoders (every finite bit pattern class).
  std::vector<uint16_t> h(512);
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<uint16_t>(rng.next());
  h[0] = 0x0001;  // f16 smallest subnormal
  h[1] = 0x7bff;  // f16 max
  h[2] = 0x8000;  // -0
  Bytes data(h.size() * 2);
  std::memcpy(data.data(), h.data(), data.size());
  for (const char* dt : {"F16", "BF16"}) {
    std::string odd = std::string("{\"h\":{\"dtype\":\"") + dt + "\",\"shape\":[512],\"data_offsets\":[0,1024]}}";
    if (odd.size() % 2 == 0) odd += ' ';  // data at an odd address: f16 reads must not assume alignment
    const Bytes img = image(odd, data);
    auto f = st::SafetensorsFile::from_memory(img.data(), img.size(), "conv");
    const TensorPtr t = f->load("h", ZEROTH_F32);
    const bool half = std::string(dt) == "F16";
    bool ok = t->dtype == ZEROTH_F32;
    for (size_t i = 0; i < h.size() && ok; ++i) {
      const double r = half ? f16_ref(h[i]) : bf16_ref(h[i]);
      const float got = t->as<float>()[i];
      ok = std::isnan(r) ? std::isnan(got) : (static_cast<double>(got) == r && std::signbit(got) == std::signbit(r));
    }
    check(ok, std::string("load: ") + dt + " -> f32 is exact against the reference decoder");
    // The same header padded to 8 bytes puts the data on an aligned address, where load
    // converts straight from the mapping (the odd-length header above takes the copy path).
    std::string hdr = std::string("{\"h\":{\"dtype\":\"") + dt + "\",\"shape\":[512],\"data_offsets\":[0,1024]}}";
    hdr.append((8 - hdr.size() % 8) % 8, ' ');
    const Bytes aligned = image(hdr, data);
    auto fa = st::SafetensorsFile::from_memory(aligned.data(), aligned.size(), "conv-aligned");
    check(reinterpret_cast<uintptr_t>(fa->view("h").bytes) % 2 == 0 &&
              reinterpret_cast<uintptr_t>(f->view("h").bytes) % 2 == 1,
          "load: one aligned and one unaligned source");
    check(same_bytes(*fa->load("h", ZEROTH_F32), *t), std::string("load: ") + dt + " aligned and unaligned paths agree");
    check(same_bytes(*fa->load("h", ZEROTH_F64), *tensor_copy(*t, ZEROTH_F64, kCpu)),
          std::string("load: ") + dt + " -> f64 agrees with f32 widened");
    check(f->load("h")->dtype == (half ? ZEROTH_F16 : ZEROTH_BF16), std::string("load: ") + dt + " loads as itself by default");
  }

  // I64 -> i32: in range loads, out of range is refused naming the element.
  std::vector<int64_t> i64 = {0, -1, 2147483647, -2147483648LL, 12345};
  Bytes d64(i64.size() * 8);
  std::memcpy(d64.data(), i64.data(), d64.size());
  const Bytes img64 = image(R"({"ids":{"dtype":"I64","shape":[5],"data_offsets":[0,40]}})", d64);
  auto f64 = st::SafetensorsFile::from_memory(img64.data(), img64.size(), "i64");
  const TensorPtr ids = f64->load("ids");
  bool ok = ids->dtype == ZEROTH_I32;
  for (size_t i = 0; i < i64.size(); ++i) ok = ok && ids->as<int32_t>()[i] == i64[i];
  check(ok, "load: I64 -> i32 in range is exact");
  check(f64->load("ids", ZEROTH_F64)->as<double>()[3] == -2147483648.0, "load: I64 -> f64 through i32");
  i64[4] = 2147483648LL;
  std::memcpy(d64.data(), i64.data(), d64.size());
  const Bytes img64b = image(R"({"ids":{"dtype":"I64","shape":[5],"data_offsets":[0,40]}})", d64);
  auto f64b = st::SafetensorsFile::from_memory(img64b.data(), img64b.size(), "i64b");
  check(throws([&] { f64b->load("ids"); }, ZEROTH_E_DTYPE, {"ids", "element 4", "2147483648"}),
        "load: I64 beyond i32 is refused with the element named");

  // I16 -> i32, BOOL -> u8 (0/1 only).
  const Bytes img16 = image(R"({"s":{"dtype":"I16","shape":[2],"data_offsets":[0,4]}})", {0xff, 0xff, 0x02, 0x01});
  auto f16 = st::SafetensorsFile::from_memory(img16.data(), img16.size(), "i16");
  const TensorPtr s = f16->load("s");
  check(s->dtype == ZEROTH_I32 && s->as<int32_t>()[0] == -1 && s->as<int32_t>()[1] == 258, "load: I16 -> i32");
  const Bytes imgb = image(R"({"m":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})", {1, 0, 1});
  auto fb = st::SafetensorsFile::from_memory(imgb.data(), imgb.size(), "bool");
  const TensorPtr m = fb->load("m");
  check(m->dtype == ZEROTH_U8 && m->as<uint8_t>()[0] == 1 && m->as<uint8_t>()[1] == 0, "load: BOOL -> u8");
  const Bytes imgb2 = image(R"({"m":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})", {1, 2, 1});
  auto fb2 = st::SafetensorsFile::from_memory(imgb2.data(), imgb2.size(), "bool2");
  check(throws([&] { fb2->load("m"); }, ZEROTH_E_FORMAT, {"bool2", "\"m\"", "element 1"}), "load: BOOL value 2 refused");

  // Known but unsupported dtypes are listed, and refused on load with E_UNSUPPORTED.
  const Bytes img8 = image(R"({"f8":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]},)"
                           R"("f4":{"dtype":"F4","shape":[4],"data_offsets":[2,4]},)"
                           R"("u64":{"dtype":"U64","shape":[1],"data_offsets":[4,12]}})",
                           zeros(12));
  auto f8 = st::SafetensorsFile::from_memory(img8.data(), img8.size(), "f8");
  check(f8->tensors().size() == 3, "load: F8/F4/U64 tensors are listed");
  check(throws([&] { f8->load("f8"); }, ZEROTH_E_UNSUPPORTED, {"F8_E4M3", "\"f8\""}), "load: F8_E4M3 -> E_UNSUPPORTED");
  check(throws([&] { f8->load("f4"); }, ZEROTH_E_UNSUPPORTED, {"F4"}), "load: F4 -> E_UNSUPPORTED");
  check(throws([&] { f8->load("u64"); }, ZEROTH_E_UNSUPPORTED, {"U64"}), "load: U64 -> E_UNSUPPORTED");
  check(throws([&] { f64->load("ids", ZEROTH_INT4); }, ZEROTH_E_DTYPE, {"int4"}), "load: as int4 refused");
  check(throws([&] { f64->load("nope"); }, ZEROTH_E_INVALID_ARG, {"nope"}), "load: unknown name -> E_INVALID_ARG");
}

// ---- malformed files ---------------------------------------------------------------------------

void test_malformed() {
  const std::string ok_entry = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  auto one = [&](const std::string& entry, size_t data = 8) { return image("{" + entry + "}", zeros(data)); };
  auto tensor = [&](const std::string& body, size_t data = 8) { return one("\"t\":{" + body + "}", data); };

  // A valid file first, so that the cases below fail for their own reason.
  {
    const Bytes good = one(ok_entry);
    auto f = st::SafetensorsFile::from_memory(good.data(), good.size(), "good");
    check(f->tensors().size() == 1, "malformed: the baseline file is valid");
    const Bytes padded = image("{" + ok_entry + "}   ", zeros(8));
    check(st::SafetensorsFile::from_memory(padded.data(), padded.size(), "pad")->tensors().size() == 1,
          "malformed: trailing space padding is accepted");
  }

  expect_format("empty", {}, {"0 bytes", "shorter than the 8-byte header"});
  expect_format("seven", Bytes(7, 0), {"7 bytes"});
  Bytes past = one(ok_entry);
  past[0] += 100;
  expect_format("past-eof", past, {"runs past the end of the file"});
  Bytes absurd = one(ok_entry);
  for (int i = 0; i < 8; ++i) absurd[i] = 0xff;
  expect_format("absurd", absurd, {"exceeds the 100000000-byte limit"});
  Bytes just_over = Bytes(8);
  const uint64_t over = st::kMaxHeaderBytes + 1;
  std::memcpy(just_over.data(), &over, 8);
  expect_format("limit+1", just_over, {"exceeds"});
  expect_format("zero-header", image("", {}), {"begin with '{'"});
  expect_format("leading-space", image(" {}", {}), {"begin with '{'"});
  expect_format("not-utf8", image("{\"t\xff\":1}", {}), {"not valid UTF-8"});
  expect_format("bad-json", image("{\"t\":}", {}), {"invalid JSON"});
  expect_format("trailing-comma", image("{" + ok_entry + ",}", zeros(8)), {"invalid JSON"});
  expect_format("truncated-json", image("{\"t\":{\"dtype\"", {}), {"invalid JSON"});
  expect_format("dup-tensor", image("{" + ok_entry + "," + ok_entry + "}", zeros(8)), {"duplicate key"});
  expect_format("dup-field", tensor(R"("dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8])"), {"duplicate key"});
  expect_format("root-array", image("[]", {}), {"begin with '{'"});
  expect_format("json-after-object", image("{} [", {}), {"invalid JSON", "after the JSON value"});
  expect_format("entry-not-object", one(R"("t":[1,2])"), {"\"t\"", "must be an object"});
  expect_format("missing-dtype", tensor(R"("shape":[2],"data_offsets":[0,8])"), {"\"t\"", "needs"});
  expect_format("missing-offsets", tensor(R"("dtype":"F32","shape":[2])"), {"\"t\"", "needs"});
  expect_format("dtype-not-string", tensor(R"("dtype":1,"shape":[2],"data_offsets":[0,8])"), {"\"t\"", "dtype must be a string"});
  expect_format("unknown-dtype", tensor(R"("dtype":"F33","shape":[2],"data_offsets":[0,8])"), {"\"t\"", "unknown dtype \"F33\""});
  expect_format("lowercase-dtype", tensor(R"("dtype":"f32","shape":[2],"data_offsets":[0,8])"), {"unknown dtype"});
  expect_format("shape-negative", tensor(R"("dtype":"F32","shape":[-2],"data_offsets":[0,8])"), {"\"t\"", "shape[0]"});
  expect_format("shape-fraction", tensor(R"("dtype":"F32","shape":[2.5],"data_offsets":[0,8])"), {"shape[0]"});
  expect_format("shape-exponent", tensor(R"("dtype":"F32","shape":[2e0],"data_offsets":[0,8])"), {"shape[0]"});
  expect_format("shape-string", tensor(R"("dtype":"F32","shape":["2"],"data_offsets":[0,8])"), {"shape[0]"});
  expect_format("shape-not-array", tensor(R"("dtype":"F32","shape":2,"data_offsets":[0,8])"), {"shape must be an array"});
  expect_format("shape-huge-dim", tensor(R"("dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8])"), {"shape[0]"});
  expect_format("shape-overflow",
                tensor(R"("dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8])"), {"\"t\"", "overflows"});
  expect_format("bytes-overflow",
                tensor(R"("dtype":"F64","shape":[4611686018427387904,4],"data_offsets":[0,8])"), {"\"t\"", "overflows"});
  expect_format("offsets-three", tensor(R"("dtype":"F32","shape":[2],"data_offsets":[0,8,8])"), {"data_offsets must be"});
  expect_format("offsets-negative", tensor(R"("dtype":"F32","shape":[2],"data_offsets":[-8,0])"), {"data_offsets must be"});
  expect_format("offsets-float", tensor(R"("dtype":"F32","shape":[2],"data_offsets":[0,8.0])"), {"data_offsets must be"});
  expect_format("begin-after-end", tensor(R"("dtype":"F32","shape":[0],"data_offsets":[8,0])"), {"begin after end"});
  expect_format("size-mismatch", tensor(R"("dtype":"F32","shape":[3],"data_offsets":[0,8])"), {"\"t\"", "needs 12 bytes"});
  expect_format("out-of-bounds", tensor(R"("dtype":"F32","shape":[4],"data_offsets":[0,16])", 8), {"\"t\"", "past the data section"});
  expect_format("huge-offsets",
                tensor(R"("dtype":"U8","shape":[1],"data_offsets":[18446744073709551614,18446744073709551615])"),
                {"past the data section"});
  expect_format("overlap",
                one(R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]})", 12),
                {"\"b\"", "overlaps tensor \"a\""});
  expect_format("same-range",
                one(R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", 8),
                {"overlaps"});
  expect_format("hole-between",
                one(R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]})", 12),
                {"\"b\"", "hole of 4 bytes"});
  expect_format("hole-at-start", tensor(R"("dtype":"F32","shape":[1],"data_offsets":[4,8])"), {"\"t\"", "hole"});
  expect_format("bytes-after", tensor(R"("dtype":"F32","shape":[2],"data_offsets":[0,8])", 9), {"1 bytes after the last tensor"});
  expect_format("data-no-tensors", image("{}", zeros(4)), {"4 bytes after"});
  expect_format("misaligned-f4", tensor(R"("dtype":"F4","shape":[3],"data_offsets":[0,1])", 1), {"whole bytes"});
  expect_format("meta-not-object", one(R"("__metadata__":[],)" + ok_entry), {"__metadata__ must be an object"});
  expect_format("meta-number", one(R"("__metadata__":{"a":1},)" + ok_entry), {"__metadata__ value \"a\" must be a string"});
  expect_format("deep", image("{\"t\":" + std::string(5000, '[') + std::string(5000, ']') + "}", {}), {"nesting"});

  // Empty tensors may share an offset with their neighbour (they occupy no bytes).
  const Bytes empties = one(
      R"("a":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("c":{"dtype":"F32","shape":[0],"data_offsets":[8,8]})");
  check(st::SafetensorsFile::from_memory(empties.data(), empties.size(), "empties")->tensors().size() == 3,
        "malformed: empty tensors at shared offsets are valid");
  // Unordered entries are fine as long as the ranges tile the data section.
  const Bytes unordered = one(
      R"("z":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]})");
  check(st::SafetensorsFile::from_memory(unordered.data(), unordered.size(), "unordered")->tensors().size() == 2,
        "malformed: entries in any order are valid");

  // Files on disk: missing file -> E_IO, directory -> E_IO.
  check(throws([] { st::SafetensorsFile::open("/nonexistent/x.safetensors"); }, ZEROTH_E_IO, {"/nonexistent"}),
        "open: missing file gives E_IO");
  check(throws([] { st::SafetensorsFile::open("/tmp"); }, ZEROTH_E_IO, {"not a regular file"}), "open: a directory gives E_IO");
}

// ---- fuzz ----------------------------------------------------------------------------------------

void test_fuzz(int iterations) {
  Rng rng{3};
  std::vector<std::pair<std::string, TensorPtr>> ts = {
      {"a", random_tensor(ZEROTH_F32, {3, 2}, rng)},
      {"b", random_tensor(ZEROTH_BF16, {5}, rng)},
      {"c", random_tensor(ZEROTH_U8, {4}, rng)},
      {"d", random_tensor(ZEROTH_I32, {}, rng)},
  };
  const Bytes base = st::serialize(ts, {{"k", "v"}});
  uint64_t hlen = 0;
  std::memcpy(&hlen, base.data(), 8);
  int accepted = 0, rejected = 0, other = 0;
  const char* tokens[] = {"{", "}", "[", "]", ",", ":", "\"", "-1", "0", "1e9", "18446744073709551616", "null", "\\u"};
  for (int it = 0; it < iterations; ++it) {
    Bytes b = base;
    const int kind = static_cast<int>(rng.below(6));
    const int edits = 1 + static_cast<int>(rng.below(4));
    for (int e = 0; e < edits; ++e) {
      if (b.empty()) break;
      switch (kind) {
        case 0:  // flip bits anywhere in the length or header
          b[rng.below(std::min<uint64_t>(b.size(), 8 + hlen))] ^= static_cast<uint8_t>(1u << rng.below(8));
          break;
        case 1:  // random byte anywhere
          b[rng.below(b.size())] = static_cast<uint8_t>(rng.next());
          break;
        case 2:  // truncate
          b.resize(rng.below(b.size()));
          break;
        case 3:  // insert or delete a byte in the header
          if (rng.below(2)) b.insert(b.begin() + 8 + rng.below(std::min<uint64_t>(b.size() - 8, hlen)), static_cast<uint8_t>(rng.next()));
          else if (b.size() > 9) b.erase(b.begin() + 8 + rng.below(std::min<uint64_t>(b.size() - 8, hlen)));
          break;
        case 4: {  // replace a digit run or a char in the header with a JSON token
          const char* tok = tokens[rng.below(sizeof(tokens) / sizeof(tokens[0]))];
          const size_t at = 8 + rng.below(std::min<uint64_t>(b.size() > 8 ? b.size() - 8 : 1, hlen));
          if (at < b.size()) {
            b.erase(b.begin() + at);
            b.insert(b.begin() + at, tok, tok + std::strlen(tok));
          }
          break;
        }
        default: {  // rewrite the length field
          const uint64_t choices[] = {0, 1, hlen - 1, hlen + 1, hlen + 8, b.size(), b.size() - 8, UINT64_MAX, rng.next()};
          const uint64_t v = choices[rng.below(9)];
          if (b.size() >= 8) std::memcpy(b.data(), &v, 8);
        }
      }
    }
    try {
      Bytes copy(b);  // exact size: ASan sees any read past the end
      auto f = st::SafetensorsFile::from_memory(copy.data(), copy.size(), "fuzz");
      for (const auto& t : f->tensors()) {
        try {
          const TensorPtr x = f->load(t.name, ZEROTH_F32);
          (void)x;
        } catch (const Error&) {
        }
      }
      ++accepted;
    } catch (const Error& e) {
      if (e.code() == ZEROTH_E_FORMAT) ++rejected;
      else ++other;
    } catch (...) {
      ++other;
    }
  }
  std::printf("fuzz: %d mutations, %d accepted, %d rejected with E_FORMAT, %d other\n", iterations, accepted, rejected,
              other);
  check(other == 0, "fuzz: every mutated file either loads or is rejected with E_FORMAT");
  check(rejected > iterations / 2, "fuzz: most mutations are rejected (the checks run)");
}

// ---- sharded checkpoints -------------------------------------------------------------------------

void test_index(const std::string& root) {
  Rng rng{4};
  const std::string dir = root + "/sharded";
  mkdir(dir.c_str(), 0755);
  const TensorPtr a = random_tensor(ZEROTH_F32, {4}, rng), b = random_tensor(ZEROTH_BF16, {2, 2}, rng),
                  c = random_tensor(ZEROTH_I32, {3}, rng);
  st::write_file(dir + "/model-00001-of-00002.safetensors", {{"a", a}, {"b", b}}, {{"format", "pt"}});
  st::write_file(dir + "/model-00002-of-00002.safetensors", {{"c", c}});
  auto index = [&](const std::string& weight_map) {
    std::ofstream(dir + "/model.safetensors.index.json")
        << R"({"metadata": {"total_size": 36, "format": "pt"}, "weight_map": )" << weight_map << "}";
  };
  index(R"({"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
            "c": "model-00002-of-00002.safetensors"})");
  auto ck = st::Checkpoint::open(dir);
  check(ck->tensors().size() == 3 && ck->shards().size() == 2, "index: 3 tensors in 2 shards, each opened once");
  check(ck->metadata().count("total_size") && ck->metadata().at("total_size") == "36", "index: metadata total_size");
  check(same_bytes(*ck->load("a"), *a) && same_bytes(*ck->load("b"), *b) && same_bytes(*ck->load("c"), *c),
        "index: every tensor loads bit-exact from its shard");
  check(ck->load("b", ZEROTH_F32)->dtype == ZEROTH_F32, "index: load with a dtype");
  check(st::Checkpoint::open(dir + "/model.safetensors.index.json")->tensors().size() == 3, "index: open the json directly");

  index(R"({"a": "model-00002-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
            "c": "model-00002-of-00002.safetensors"})");
  check(throws([&] { st::Checkpoint::open(dir); }, ZEROTH_E_FORMAT, {"\"a\"", "no such tensor"}),
        "index: a name mapped to the wrong shard is E_FORMAT");
  index(R"({"a": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"})");
  check(throws([&] { st::Checkpoint::open(dir); }, ZEROTH_E_FORMAT, {"\"b\"", "does not list"}),
        "index: a shard tensor missing from weight_map is E_FORMAT");
  index(R"({"a": "../model-00001-of-00002.safetensors"})");
  check(throws([&] { st::Checkpoint::open(dir); }, ZEROTH_E_FORMAT, {"not a file name inside"}),
        "index: '..' in a shard name is refused");
  index(R"({"a": "/etc/passwd"})");
  check(throws([&] { st::Checkpoint::open(dir); }, ZEROTH_E_FORMAT, {"not a file name inside"}),
        "index: absolute shard path is refused");
  index(R"({"a": "missing.safetensors"})");
  check(throws([&] { st::Checkpoint::open(dir); }, ZEROTH_E_IO, {"missing.safetensors"}), "index: missing shard is E_IO");
  index(R"({"a": 3})");
  check(throws([&] { st::Checkpoint::open(dir); }, ZEROTH_E_FORMAT, {"file name string"}), "index: non-string shard");
  std::ofstream(dir + "/model.safetensors.index.json") << R"({"metadata": {}})";
  check(throws([&] { st::Checkpoint::open(dir); }, ZEROTH_E_FORMAT, {"weight_map"}), "index: missing weight_map");
  std::ofstream(dir + "/model.safetensors.index.json") << R"({"weight_map": {},})";
  check(throws([&] { st::Checkpoint::open(dir); }, ZEROTH_E_FORMAT, {"invalid JSON"}), "index: invalid JSON");
  check(throws([&] { st::Checkpoint::open(root + "/nothing-here"); }, ZEROTH_E_IO, {"nothing-here"}),
        "checkpoint: missing path is E_IO");
  const std::string empty_dir = root + "/emptydir";
  mkdir(empty_dir.c_str(), 0755);
  check(throws([&] { st::Checkpoint::open(empty_dir); }, ZEROTH_E_IO, {"neither"}), "checkpoint: empty folder is E_IO");
}

// ---- shared fixtures -------------------------------------------------------------------------------

void test_fixtures() {
  const char* env = std::getenv("ZEROTH_FIXTURES");
  const std::string root = env ? env : "/work/shared/fixtures";
  DIR* d = opendir(root.c_str());
  if (!d) {
    std::printf("fixtures: %s not found; skipping the fixture listing\n", root.c_str());
    return;
  }
  std::vector<std::string> folders;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') folders.push_back(e->d_name);
  closedir(d);
  std::sort(folders.begin(), folders.end());
  int files = 0;
  for (const auto& folder : folders) {
    for (const char* name : {"model.safetensors", "reference.safetensors"}) {
      const std::string path = root + "/" + folder + "/" + name;
      if (access(path.c_str(), R_OK) != 0) continue;
      ++files;
      try {
        auto ck = st::Checkpoint::open(path);
        std::printf("%s: %zu tensors\n", path.c_str(), ck->tensors().size());
        bool all_finite = true;
        for (const auto& e : ck->tensors()) {
          std::printf("  %-48s %-5s %s\n", e.info->name.c_str(), st::file_dtype_traits(e.info->dtype).name,
                      shape_string(e.info->shape).c_str());
          const TensorPtr t = ck->load(e.info->name, ZEROTH_F64);
          for (int64_t i = 0; i < t->numel; ++i) all_finite = all_finite && std::isfinite(t->as<double>()[i]);
        }
        check(!ck->tensors().empty() && all_finite, "fixture " + path + ": every tensor loads and is finite");
        if (std::string(name) == "reference.safetensors") {
          const auto* ids = ck->find("input_ids");
          const auto* logits = ck->find("logits");
          check(ids && logits && ids->info->shape.size() == 2 && logits->info->shape.size() == 3 &&
                    logits->info->shape[0] == ids->info->shape[0] && logits->info->shape[1] == ids->info->shape[1],
                "fixture " + path + ": input_ids [B,T] and logits [B,T,V] agree");
        }
      } catch (const Error& e) {
        check(false, "fixture " + path + ": " + e.what());
      }
    }
  }
  check(files > 0, "fixtures: found at least one safetensors file under " + root);
}

}  // namespace

int main(int argc, char** argv) {
  int fuzz = 4000;
  if (const char* f = std::getenv("ZEROTH_FUZZ_ITERATIONS")) fuzz = std::atoi(f);
  const std::string dir = tmp_dir();
  try {
    test_json();
    test_roundtrip(dir);
    test_conversions();
    test_malformed();
    test_fuzz(fuzz);
    test_index(dir);
    test_fixtures();
  } catch (const std::exception& e) {
    check(false, std::string("unexpected exception: ") + e.what());
  }
  std::string cmd = "rm -rf '" + dir + "'";
  if (std::system(cmd.c_str()) != 0) std::printf("note: could not remove %s\n", dir.c_str());
  return report();
}

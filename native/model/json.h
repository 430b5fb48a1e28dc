// json.h — a small, strict JSON (RFC 8259) parser for the files zeroth reads from disk:
// safetensors headers, model.safetensors.index.json and config.json.
//
// Strict on purpose: these bytes come from untrusted files. The parser accepts exactly
// RFC 8259 (no comments, no trailing commas, no NaN, no leading zeros), requires valid
// UTF-8 everywhere (escaped surrogates must pair), rejects duplicate keys in an object,
// and bounds nesting depth so a hostile file cannot exhaust the stack. Every failure is a
// zeroth::Error(ZEROTH_E_FORMAT) naming the source and the byte offset.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace zeroth::json {

enum class Type { Null, Bool, Number, String, Array, Object };

const char* type_name(Type t);

struct Value {
  Type type = Type::Null;
  bool boolean = false;
  // Numbers: `number` always holds the nearest double. An integer literal (no fraction,
  // no exponent) that fits also sets is_int / is_uint with its exact value, so offsets
  // above 2^53 are read without rounding.
  double number = 0;
  bool is_int = false;   // fits int64_t
  bool is_uint = false;  // non-negative and fits uint64_t
  int64_t int_value = 0;
  uint64_t uint_value = 0;
  std::string string;                                // String (UTF-8, unescaped)
  std::vector<Value> array;                          // Array
  std::vector<std::pair<std::string, Value>> object; // Object, in document order, keys unique

  bool is_null() const { return type == Type::Null; }
  bool is_bool() const { return type == Type::Bool; }
  bool is_number() const { return type == Type::Number; }
  bool is_string() const { return type == Type::String; }
  bool is_array() const { return type == Type::Array; }
  bool is_object() const { return type == Type::Object; }
  // The member named `key` of an object, or nullptr (also when this is not an object).
  const Value* find(std::string_view key) const;
};

// Deepest nesting of arrays/objects accepted (configs use 3-4; headers use 3).
constexpr int kMaxDepth = 64;

// Parses one JSON document; only whitespace may follow it. `source` names the input in
// error messages (e.g. "model.safetensors header").
Value parse(std::string_view text, const std::string& source);

// True if `bytes` is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
// On failure *bad_offset (if given) is the offset of the first bad byte.
bool valid_utf8(std::string_view bytes, size_t* bad_offset = nullptr);

// `s` as a JSON string literal with quotes: ", \ and control characters escaped, other
// bytes (UTF-8) kept as they are.
std::string quote(std::string_view s);

}  // namespace zeroth::json

// json.cpp — recursive-descent JSON parser; see json.h for what "strict" means here.
#include "json.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "core/errors.h"

namespace zeroth::json {

const char* type_name(Type t) {
  switch (t) {
    case Type::Null: return "null";
    case Type::Bool: return "a boolean";
    case Type::Number: return "a number";
    case Type::String: return "a string";
    case Type::Array: return "an array";
    case Type::Object: return "an object";
  }
  return "?";
}

const Value* Value::find(std::string_view key) const {
  if (type != Type::Object) return nullptr;
  for (const auto& kv : object)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

namespace {

// Decodes one UTF-8 sequence at s[i]; returns its length (1-4) and the code point, or 0
// when the bytes are not well-formed (overlong, surrogate, > U+10FFFF, truncated).
size_t decode_utf8(const unsigned char* s, size_t n, size_t i, uint32_t* cp) {
  const unsigned char c = s[i];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t len;
  uint32_t v, min;
  if ((c & 0xE0) == 0xC0) len = 2, v = c & 0x1F, min = 0x80;
  else if ((c & 0xF0) == 0xE0) len = 3, v = c & 0x0F, min = 0x800;
  else if ((c & 0xF8) == 0xF0) len = 4, v = c & 0x07, min = 0x10000;
  else return 0;
  if (n - i < len) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((s[i + k] & 0xC0) != 0x80) return 0;
    v = (v << 6) | (s[i + k] & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return len;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

class Parser {
 public:
  Parser(std::string_view text, const std::string& source)
      : s_(reinterpret_cast<const unsigned char*>(text.data())), n_(text.size()), source_(source) {}

  Value document() {
    skip_ws();
    Value v = value(0);
    skip_ws();
    if (i_ != n_) error("unexpected data after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void error(const std::string& what) const {
    fail(ZEROTH_E_FORMAT, source_ + ": invalid JSON at byte " + std::to_string(i_) + ": " + what);
  }

  void skip_ws() {
    while (i_ < n_ && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }

  bool consume_literal(const char* lit) {
    const size_t len = std::strlen(lit);
    if (n_ - i_ < len || std::memcmp(s_ + i_, lit, len) != 0) return false;
    i_ += len;
    return true;
  }

  Value value(int depth) {
    if (i_ >= n_) error("unexpected end of input");
    Value v;
    switch (s_[i_]) {
      case '{': object(v, depth + 1); break;
      case '[': array(v, depth + 1); break;
      case '"':
        v.type = Type::String;
        v.string = string();
        break;
      case 't':
        if (!consume_literal("true")) error("invalid literal");
        v.type = Type::Bool;
        v.boolean = true;
        break;
      case 'f':
        if (!consume_literal("false")) error("invalid literal");
        v.type = Type::Bool;
        break;
      case 'n':
        if (!consume_literal("null")) error("invalid literal");
        break;
      default:
        if (s_[i_] == '-' || (s_[i_] >= '0' && s_[i_] <= '9')) number(v);
        else error("unexpected character");
    }
    return v;
  }

  void object(Value& v, int depth) {
    if (depth > kMaxDepth) error("nesting deeper than " + std::to_string(kMaxDepth) + " levels");
    v.type = Type::Object;
    ++i_;  // '{'
    skip_ws();
    if (i_ < n_ && s_[i_] == '}') {
      ++i_;
      return;
    }
    for (;;) {
      skip_ws();
      if (i_ >= n_ || s_[i_] != '"') error("expected a string key");
      std::string key = string();
      skip_ws();
      if (i_ >= n_ || s_[i_] != ':') error("expected ':' after a key");
      ++i_;
      skip_ws();
      Value member = value(depth);
      v.object.emplace_back(std::move(key), std::move(member));
      skip_ws();
      if (i_ >= n_) error("unterminated object");
      if (s_[i_] == ',') {
        ++i_;
        continue;
      }
      if (s_[i_] == '}') {
        ++i_;
        break;
      }
      error("expected ',' or '}' in an object");
    }
    // Duplicate keys make a file mean different things to different readers: refuse them.
    std::vector<const std::string*> keys;
    keys.reserve(v.object.size());
    for (const auto& kv : v.object) keys.push_back(&kv.first);
    std::sort(keys.begin(), keys.end(), [](const std::string* a, const std::string* b) { return *a < *b; });
    for (size_t k = 1; k < keys.size(); ++k)
      if (*keys[k] == *keys[k - 1]) error("duplicate key " + quote(*keys[k]) + " in an object");
  }

  void array(Value& v, int depth) {
    if (depth > kMaxDepth) error("nesting deeper than " + std::to_string(kMaxDepth) + " levels");
    v.type = Type::Array;
    ++i_;  // '['
    skip_ws();
    if (i_ < n_ && s_[i_] == ']') {
      ++i_;
      return;
    }
    for (;;) {
      skip_ws();
      v.array.push_back(value(depth));
      skip_ws();
      if (i_ >= n_) error("unterminated array");
      if (s_[i_] == ',') {
        ++i_;
        continue;
      }
      if (s_[i_] == ']') {
        ++i_;
        return;
      }
      error("expected ',' or ']' in an array");
    }
  }

  uint32_t hex4() {
    if (n_ - i_ < 4) error("truncated \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const unsigned char c = s_[i_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= c - '0';
      else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
      else error("invalid hex digit in \\u escape");
    }
    return v;
  }

  std::string string() {
    ++i_;  // opening quote
    std::string out;
    for (;;) {
      if (i_ >= n_) error("unterminated string");
      const unsigned char c = s_[i_];
      if (c == '"') {
        ++i_;
        return out;
      }
      if (c < 0x20) error("control character in a string (escape it)");
      if (c == '\\') {
        ++i_;
        if (i_ >= n_) error("unterminated escape");
        const unsigned char e = s_[i_++];
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            uint32_t cp = hex4();
            if (cp >= 0xDC00 && cp <= 0xDFFF) error("lone low surrogate in \\u escape");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              if (n_ - i_ < 2 || s_[i_] != '\\' || s_[i_ + 1] != 'u') error("lone high surrogate in \\u escape");
              i_ += 2;
              const uint32_t lo = hex4();
              if (lo < 0xDC00 || lo > 0xDFFF) error("high surrogate not followed by a low surrogate");
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            append_utf8(out, cp);
            break;
          }
          default: error("invalid escape character");
        }
        continue;
      }
      uint32_t cp;
      const size_t len = decode_utf8(s_, n_, i_, &cp);
      if (len == 0) error("invalid UTF-8");
      out.append(reinterpret_cast<const char*>(s_ + i_), len);
      i_ += len;
    }
  }

  static bool digit(unsigned char c) { return c >= '0' && c <= '9'; }

  void number(Value& v) {
    const size_t start = i_;
    bool negative = false, integral = true, negative_exponent = false;
    if (s_[i_] == '-') {
      negative = true;
      ++i_;
    }
    if (i_ >= n_ || !digit(s_[i_])) error("invalid number");
    if (s_[i_] == '0') {
      ++i_;
      if (i_ < n_ && digit(s_[i_])) error("leading zeros are not allowed in numbers");
    } else {
      while (i_ < n_ && digit(s_[i_])) ++i_;
    }
    const size_t int_end = i_;
    if (i_ < n_ && s_[i_] == '.') {
      integral = false;
      ++i_;
      if (i_ >= n_ || !digit(s_[i_])) error("a decimal point must be followed by digits");
      while (i_ < n_ && digit(s_[i_])) ++i_;
    }
    if (i_ < n_ && (s_[i_] == 'e' || s_[i_] == 'E')) {
      integral = false;
      ++i_;
      if (i_ < n_ && (s_[i_] == '+' || s_[i_] == '-')) negative_exponent = s_[i_++] == '-';
      if (i_ >= n_ || !digit(s_[i_])) error("an exponent must have digits");
      while (i_ < n_ && digit(s_[i_])) ++i_;
    }
    v.type = Type::Number;
    const char* first = reinterpret_cast<const char*>(s_ + start);
    const char* last = reinterpret_cast<const char*>(s_ + i_);
    const auto r = std::from_chars(first, last, v.number);
    if (r.ec == std::errc::result_out_of_range) {
      if (!negative_exponent) error("number out of range");
      v.number = negative ? -0.0 : 0.0;  // underflow: the nearest double is zero
    } else if (r.ec != std::errc() || r.ptr != last) {
      error("invalid number");
    }
    if (integral) {
      // Exact integer value: digits accumulate in uint64 with an overflow check.
      uint64_t u = 0;
      bool fits = true;
      for (size_t k = start + (negative ? 1 : 0); k < int_end; ++k) {
        const uint64_t d = s_[k] - '0';
        if (u > (UINT64_MAX - d) / 10) {
          fits = false;
          break;
        }
        u = u * 10 + d;
      }
      if (fits) {
        if (!negative) {
          v.is_uint = true;
          v.uint_value = u;
          if (u <= static_cast<uint64_t>(INT64_MAX)) {
            v.is_int = true;
            v.int_value = static_cast<int64_t>(u);
          }
        } else if (u <= static_cast<uint64_t>(INT64_MAX) + 1) {
          v.is_int = true;
          v.int_value = u == static_cast<uint64_t>(INT64_MAX) + 1 ? INT64_MIN : -static_cast<int64_t>(u);
          if (u == 0) {  // "-0" is the integer zero
            v.is_uint = true;
            v.uint_value = 0;
          }
        }
      }
    }
  }

  const unsigned char* s_;
  size_t n_;
  size_t i_ = 0;
  const std::string& source_;
};

}  // namespace

Value parse(std::string_view text, const std::string& source) { return Parser(text, source).document(); }

bool valid_utf8(std::string_view bytes, size_t* bad_offset) {
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    uint32_t cp;
    const size_t len = decode_utf8(s, n, i, &cp);
    if (len == 0) {
      if (bad_offset) *bad_offset = i;
      return false;
    }
    i += len;
  }
  return true;
}

std::string quote(std::string_view s) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

}  // namespace zeroth::json

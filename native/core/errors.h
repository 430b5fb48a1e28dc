// errors.h — the one exception type of the C++ core and the checks that throw it.
//
// Every failure inside the engine is a zeroth::Error carrying a stable zeroth_status.
// The N-API layer turns it into a JS ZerothError; the C ABI turns it into a status
// plus a thread-local message. Nothing in the core calls abort() on bad input.
#pragma once
#include <exception>
#include <string>
#include <utility>

#include "../include/zeroth.h"

namespace zeroth {

class Error : public std::exception {
 public:
  Error(zeroth_status code, std::string message) : code_(code), message_(std::move(message)) {}
  const char* what() const noexcept override { return message_.c_str(); }
  zeroth_status code() const noexcept { return code_; }

 private:
  zeroth_status code_;
  std::string message_;
};

[[noreturn]] inline void fail(zeroth_status code, std::string message) { throw Error(code, std::move(message)); }

// ZCHECK(cond, code, message-expression): the message is only built when the check fails.
#define ZCHECK(cond, code, msg)                     \
  do {                                              \
    if (!(cond)) ::zeroth::fail((code), (msg));     \
  } while (0)

const char* status_name(zeroth_status s) noexcept;

}  // namespace zeroth

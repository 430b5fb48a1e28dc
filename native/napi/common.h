// common.h — the thin glue every N-API file shares: tensor handles, argument readers,
// error conversion and Promise-returning async work.
//
// Errors: zeroth::Error becomes an instance of the TypeScript ZerothError class (handed
// to us once by src/native.ts through setErrorClass) with its stable `code`.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/tensor.h"

namespace zeroth::napi {

// ---- module registration: each napi/*.cpp file adds its functions at load time ----------
using InitFn = void (*)(Napi::Env, Napi::Object);
struct Registrar {
  Registrar(const char* name, InitFn fn);
};
#define ZEROTH_NAPI_MODULE(name, fn) static ::zeroth::napi::Registrar zeroth_registrar_##name(#name, fn)

// ---- errors -----------------------------------------------------------------------------
Napi::Error make_error(Napi::Env env, zeroth_status code, const std::string& message);
[[noreturn]] void throw_error(Napi::Env env, zeroth_status code, const std::string& message);

// Runs fn and converts zeroth::Error / std::bad_alloc / std::exception to a JS ZerothError.
template <typename F>
auto guarded(Napi::Env env, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const Error& e) {
    throw make_error(env, e.code(), e.what());
  } catch (const std::bad_alloc&) {
    throw make_error(env, ZEROTH_E_OOM, "out of memory; free tensors or use a smaller batch");
  } catch (const std::exception& e) {
    throw make_error(env, ZEROTH_E_INTERNAL, std::string("internal error: ") + e.what());
  }
}

// ---- tensor handles -----------------------------------------------------------------------
// A JS tensor holds an External<TensorBox>. dispose() empties the box; the External's
// finalizer frees whatever is left when the JS object is collected.
struct TensorBox {
  TensorPtr tensor;
  int64_t reported_bytes = 0;  // external memory reported to V8
};

Napi::Value wrap_tensor(Napi::Env env, TensorPtr t);
// The live tensor behind a handle; E_DISPOSED if it was disposed, E_INVALID_ARG if not a handle.
TensorPtr& unwrap_tensor(Napi::Env env, const Napi::Value& v, const char* what);
TensorBox* unwrap_box(Napi::Env env, const Napi::Value& v, const char* what);

// ---- argument readers (the TypeScript layer validates first; these re-check) ---------------
zeroth_dtype arg_dtype(Napi::Env env, const Napi::Value& v, const char* what);
zeroth_device arg_device(Napi::Env env, const Napi::Value& v, const char* what);
Shape arg_shape(Napi::Env env, const Napi::Value& v, const char* what);
double arg_number(Napi::Env env, const Napi::Value& v, const char* what);
int64_t arg_int(Napi::Env env, const Napi::Value& v, const char* what);
uint64_t arg_u64(Napi::Env env, const Napi::Value& v, const char* what);  // BigInt or safe integer
std::string arg_string(Napi::Env env, const Napi::Value& v, const char* what);
std::vector<TensorPtr> arg_tensor_list(Napi::Env env, const Napi::Value& v, const char* what);
Napi::Value device_value(Napi::Env env, zeroth_device d);

// ---- async work ---------------------------------------------------------------------------
// Runs `work` on a libuv worker thread and resolves the returned Promise with `done(env)`
// (run back on the JS thread). A zeroth::Error thrown by work rejects with a ZerothError.
Napi::Promise run_async(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done);

}  // namespace zeroth::napi

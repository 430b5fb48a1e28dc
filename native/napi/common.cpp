#include "common.h"

#include <cmath>
#include <mutex>

namespace zeroth::napi {
namespace {

struct Registry {
  std::vector<std::pair<const char*, InitFn>> entries;
};
Registry& registry() {
  static Registry r;
  return r;
}

Napi::FunctionReference* g_error_class = nullptr;

// Tensor handles carry this type tag, so an External of another kind (a journal, a model, a
// safetensors file) can never be read as a tensor.
constexpr napi_type_tag kTensorTag = {0x7a65726f74685f74ull, 0x656e736f725f7631ull};

}  // namespace

Registrar::Registrar(const char* name, InitFn fn) { registry().entries.emplace_back(name, fn); }

Napi::Error make_error(Napi::Env env, zeroth_status code, const std::string& message) {
  const char* name = status_name(code);
  if (g_error_class && !g_error_class->IsEmpty()) {
    Napi::Object err = g_error_class->New({Napi::String::New(env, name), Napi::String::New(env, message)});
    return Napi::Error(env, err);
  }
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, name));
  return err;
}

void throw_error(Napi::Env env, zeroth_status code, const std::string& message) {
  throw make_error(env, code, message);
}

// ---- tensors --------------------------------------------------------------------------------

Napi::Value wrap_tensor(Napi::Env env, TensorPtr t) {
  auto* box = new TensorBox{std::move(t), 0};
  if (box->tensor->on_cpu()) {
    box->reported_bytes = static_cast<int64_t>(box->tensor->storage->bytes);
    Napi::MemoryManagement::AdjustExternalMemory(env, box->reported_bytes);
  }
  auto handle = Napi::External<TensorBox>::New(env, box, [](Napi::Env e, TensorBox* b) {
    if (b->reported_bytes) Napi::MemoryManagement::AdjustExternalMemory(e, -b->reported_bytes);
    delete b;
  });
  NAPI_THROW_IF_FAILED(env, napi_type_tag_object(env, handle, &kTensorTag), Napi::Value());
  return handle;
}

TensorBox* unwrap_box(Napi::Env env, const Napi::Value& v, const char* what) {
  bool tagged = false;
  if (v.IsExternal()) NAPI_THROW_IF_FAILED(env, napi_check_object_type_tag(env, v, &kTensorTag, &tagged), nullptr);
  if (!tagged) throw_error(env, ZEROTH_E_INVALID_ARG, std::string(what) + " is not a zeroth tensor");
  return v.As<Napi::External<TensorBox>>().Data();
}

TensorPtr& unwrap_tensor(Napi::Env env, const Napi::Value& v, const char* what) {
  TensorBox* box = unwrap_box(env, v, what);
  if (!box->tensor)
    throw_error(env, ZEROTH_E_DISPOSED, std::string(what) + " was disposed; create a new tensor instead of reusing it");
  return box->tensor;
}

// ---- arguments --------------------------------------------------------------------------------

zeroth_dtype arg_dtype(Napi::Env env, const Napi::Value& v, const char* what) {
  zeroth_dtype d;
  // 'int8' (a quantized weight) is stored as i8 codes plus QuantInfo.
  if (v.IsString() && v.As<Napi::String>().Utf8Value() == "int8") return ZEROTH_I8;
  if (!v.IsString() || !dtype_from_name(v.As<Napi::String>().Utf8Value(), &d))
    throw_error(env, ZEROTH_E_DTYPE,
                std::string(what) + " must be one of 'f64', 'f32', 'f16', 'bf16', 'i32', 'i8', 'u8', 'int4'");
  return d;
}

zeroth_device arg_device(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsObject()) throw_error(env, ZEROTH_E_DEVICE, std::string(what) + " must be a device object");
  Napi::Object o = v.As<Napi::Object>();
  const std::string type = o.Get("type").ToString().Utf8Value();
  const int64_t index = o.Get("index").IsNumber() ? o.Get("index").As<Napi::Number>().Int64Value() : 0;
  zeroth_device d{ZEROTH_DEVICE_CPU, 0};
  if (type == "cuda") d.type = ZEROTH_DEVICE_CUDA;
  else if (type != "cpu") throw_error(env, ZEROTH_E_DEVICE, std::string(what) + ": unknown device type '" + type + "'");
  if (index < 0 || index > 1024) throw_error(env, ZEROTH_E_DEVICE, std::string(what) + ": device index out of range");
  d.index = static_cast<int32_t>(index);
  guarded(env, [&] { backend_for(d); });  // E_DEVICE with a helpful message when unavailable
  return d;
}

Shape arg_shape(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsArray()) throw_error(env, ZEROTH_E_SHAPE, std::string(what) + " must be an array of dimensions");
  Napi::Array a = v.As<Napi::Array>();
  if (a.Length() > ZEROTH_MAX_DIMS)
    throw_error(env, ZEROTH_E_SHAPE, std::string(what) + " has more than " + std::to_string(ZEROTH_MAX_DIMS) + " dimensions");
  Shape s;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value d = a.Get(i);
    const double x = d.IsNumber() ? d.As<Napi::Number>().DoubleValue() : -1;
    if (!(x >= 0) || x != std::floor(x) || x > 9007199254740991.0)
      throw_error(env, ZEROTH_E_SHAPE, std::string(what) + "[" + std::to_string(i) + "] must be a non-negative integer");
    s.push_back(static_cast<int64_t>(x));
  }
  guarded(env, [&] { shape_numel(s); });
  return s;
}

double arg_number(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) throw_error(env, ZEROTH_E_INVALID_ARG, std::string(what) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

int64_t arg_int(Napi::Env env, const Napi::Value& v, const char* what) {
  const double x = arg_number(env, v, what);
  if (x != std::floor(x) || std::fabs(x) > 9007199254740991.0)
    throw_error(env, ZEROTH_E_INVALID_ARG, std::string(what) + " must be an integer");
  return static_cast<int64_t>(x);
}

uint64_t arg_u64(Napi::Env env, const Napi::Value& v, const char* what) {
  if (v.IsBigInt()) {
    bool lossless = false;
    const uint64_t x = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw_error(env, ZEROTH_E_INVALID_ARG, std::string(what) + " must fit in 64 unsigned bits");
    return x;
  }
  const int64_t x = arg_int(env, v, what);
  if (x < 0) throw_error(env, ZEROTH_E_INVALID_ARG, std::string(what) + " must be non-negative");
  return static_cast<uint64_t>(x);
}

std::string arg_string(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsString()) throw_error(env, ZEROTH_E_INVALID_ARG, std::string(what) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

std::vector<TensorPtr> arg_tensor_list(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsArray()) throw_error(env, ZEROTH_E_INVALID_ARG, std::string(what) + " must be an array of tensors");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<TensorPtr> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) out.push_back(unwrap_tensor(env, a.Get(i), what));
  return out;
}

Napi::Value device_value(Napi::Env env, zeroth_device d) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("type", d.type == ZEROTH_DEVICE_CPU ? "cpu" : "cuda");
  o.Set("index", d.index);
  return o;
}

// ---- async ---------------------------------------------------------------------------------

namespace {
class Worker : public Napi::AsyncWorker {
 public:
  Worker(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done)
      : Napi::AsyncWorker(env, "zeroth"), deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)), done_(std::move(done)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      work_();
    } catch (const Error& e) {
      code_ = e.code();
      message_ = e.what();
    } catch (const std::bad_alloc&) {
      code_ = ZEROTH_E_OOM;
      message_ = "out of memory; free tensors or use a smaller batch";
    } catch (const std::exception& e) {
      code_ = ZEROTH_E_INTERNAL;
      message_ = std::string("internal error: ") + e.what();
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (code_ != ZEROTH_OK) {
      deferred_.Reject(make_error(env, code_, message_).Value());
      return;
    }
    try {
      deferred_.Resolve(guarded(env, [&] { return done_(env); }));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> work_;
  std::function<Napi::Value(Napi::Env)> done_;
  zeroth_status code_ = ZEROTH_OK;
  std::string message_;
};
}  // namespace

Napi::Promise run_async(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done) {
  auto* w = new Worker(env, std::move(work), std::move(done));
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

// ---- module entry ------------------------------------------------------------------------

static Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) throw Napi::TypeError::New(info.Env(), "setErrorClass expects a constructor");
  delete g_error_class;
  g_error_class = new Napi::FunctionReference(Napi::Persistent(info[0].As<Napi::Function>()));
  return info.Env().Undefined();
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass));
  for (auto& [name, fn] : registry().entries) fn(env, exports);
  return exports;
}

NODE_API_MODULE(zeroth, Init)

}  // namespace zeroth::napi

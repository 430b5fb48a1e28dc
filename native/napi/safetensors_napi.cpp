// safetensors_napi.cpp — opening, loading from and writing safetensors checkpoints.
//
//   safetensorsOpen(path) -> Promise<{handle, tensors: [{name, dtype, fileDtype, shape, file,
//                                      begin, end}], metadata}>
//   safetensorsLoad(handle, name, dtype?, device?) -> Promise<tensor handle>
//   safetensorsClose(handle)
//   safetensorsSave(path, [{name, tensor}], metadata) -> Promise<undefined>
//
// `dtype` is the zeroth dtype a tensor loads as by default (I64 -> 'i32', BOOL -> 'u8'),
// or null when zeroth cannot load the file's dtype (F8_E4M3, ...); `fileDtype` is the
// name written in the file. Opening and loading run on worker threads.
#include <map>

#include "common.h"
#include "model/json.h"
#include "model/safetensors.h"

namespace zeroth::napi {
namespace {

namespace st = zeroth::safetensors;

// A checkpoint handle is an External tagged with this value, so that a tensor handle (or
// any other External) passed by mistake is refused instead of misread.
const napi_type_tag kCheckpointTag = {0x7a65726f74685354ULL, 0x636b707448616e64ULL};

struct CheckpointBox {
  std::shared_ptr<st::Checkpoint> checkpoint;
};

CheckpointBox* unwrap_checkpoint_box(Napi::Env env, const Napi::Value& v) {
  bool tagged = false;
  if (v.IsExternal()) NAPI_THROW_IF_FAILED(env, napi_check_object_type_tag(env, v, &kCheckpointTag, &tagged), nullptr);
  if (!tagged) throw_error(env, ZEROTH_E_INVALID_ARG, "handle is not a safetensors checkpoint handle");
  return v.As<Napi::External<CheckpointBox>>().Data();
}

std::shared_ptr<st::Checkpoint> unwrap_checkpoint(Napi::Env env, const Napi::Value& v) {
  CheckpointBox* box = unwrap_checkpoint_box(env, v);
  if (!box->checkpoint) throw_error(env, ZEROTH_E_DISPOSED, "the safetensors checkpoint was closed; open it again");
  return box->checkpoint;
}

Napi::Value describe(Napi::Env env, const std::shared_ptr<st::Checkpoint>& ck) {
  Napi::Object out = Napi::Object::New(env);
  auto* box = new CheckpointBox{ck};
  Napi::External<CheckpointBox> handle =
      Napi::External<CheckpointBox>::New(env, box, [](Napi::Env, CheckpointBox* b) { delete b; });
  NAPI_THROW_IF_FAILED(env, napi_type_tag_object(env, handle, &kCheckpointTag), Napi::Value());
  out.Set("handle", handle);

  Napi::Array tensors = Napi::Array::New(env, ck->tensors().size());
  uint32_t k = 0;
  for (const auto& e : ck->tensors()) {
    const st::TensorInfo& t = *e.info;
    const st::FileDtypeTraits& tr = st::file_dtype_traits(t.dtype);
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", t.name);
    o.Set("dtype", tr.loadable ? Napi::Value(Napi::String::New(env, dtype_traits(tr.load_as).name)) : env.Null());
    o.Set("fileDtype", tr.name);
    Napi::Array shape = Napi::Array::New(env, t.shape.size());
    for (size_t i = 0; i < t.shape.size(); ++i)
      shape.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(t.shape[i])));
    o.Set("shape", shape);
    o.Set("file", e.file->path());
    o.Set("begin", Napi::Number::New(env, static_cast<double>(t.begin)));
    o.Set("end", Napi::Number::New(env, static_cast<double>(t.end)));
    tensors.Set(k++, o);
  }
  out.Set("tensors", tensors);
  Napi::Object meta = Napi::Object::New(env);
  for (const auto& [key, value] : ck->metadata()) meta.Set(key, value);
  out.Set("metadata", meta);
  return out;
}

Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = arg_string(env, info[0], "path");
  auto result = std::make_shared<std::shared_ptr<st::Checkpoint>>();
  return run_async(
      env, [path, result] { *result = st::Checkpoint::open(path); },
      [result](Napi::Env e) { return describe(e, *result); });
}

Napi::Value Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<st::Checkpoint> ck = unwrap_checkpoint(env, info[0]);
  const std::string name = arg_string(env, info[1], "name");
  const bool has_dtype = info.Length() > 2 && !info[2].IsUndefined() && !info[2].IsNull();
  const zeroth_dtype dtype = has_dtype ? arg_dtype(env, info[2], "dtype") : ZEROTH_F32;
  const bool has_device = info.Length() > 3 && !info[3].IsUndefined() && !info[3].IsNull();
  const zeroth_device device = has_device ? arg_device(env, info[3], "device") : zeroth_device{ZEROTH_DEVICE_CPU, 0};
  guarded(env, [&] {
    if (!ck->find(name)) fail(ZEROTH_E_INVALID_ARG, "the checkpoint has no tensor " + json::quote(name));
  });
  auto result = std::make_shared<TensorPtr>();
  return run_async(
      env,
      [ck, name, has_dtype, dtype, device, result] {
        if (has_dtype) {
          *result = ck->load(name, dtype, device);
        } else {
          TensorPtr t = ck->load(name);
          *result = device.type == ZEROTH_DEVICE_CPU ? t : tensor_copy(*t, t->dtype, device);
        }
      },
      [result](Napi::Env e) { return wrap_tensor(e, std::move(*result)); });
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  // Tensors already loaded are copies and stay valid; loads in flight hold their own reference.
  unwrap_checkpoint_box(info.Env(), info[0])->checkpoint.reset();
  return info.Env().Undefined();
}

Napi::Value Save(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = arg_string(env, info[0], "path");
  if (!info[1].IsArray()) throw_error(env, ZEROTH_E_INVALID_ARG, "tensors must be an array of {name, tensor}");
  Napi::Array list = info[1].As<Napi::Array>();
  std::vector<std::pair<std::string, TensorPtr>> tensors;
  for (uint32_t i = 0; i < list.Length(); ++i) {
    Napi::Value item = list.Get(i);
    if (!item.IsObject()) throw_error(env, ZEROTH_E_INVALID_ARG, "tensors[" + std::to_string(i) + "] must be {name, tensor}");
    Napi::Object o = item.As<Napi::Object>();
    const std::string label = "tensors[" + std::to_string(i) + "]";
    tensors.emplace_back(arg_string(env, o.Get("name"), (label + ".name").c_str()),
                         unwrap_tensor(env, o.Get("tensor"), (label + ".tensor").c_str()));
  }
  std::map<std::string, std::string> metadata;
  if (info.Length() > 2 && !info[2].IsUndefined() && !info[2].IsNull()) {
    if (!info[2].IsObject()) throw_error(env, ZEROTH_E_INVALID_ARG, "metadata must be an object of strings");
    Napi::Object m = info[2].As<Napi::Object>();
    Napi::Array keys = m.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      const std::string key = keys.Get(i).ToString().Utf8Value();
      metadata[key] = arg_string(env, m.Get(key), ("metadata." + key).c_str());
    }
  }
  // The tensors are held by shared pointers: disposing a handle during the write is safe.
  return run_async(
      env, [path, tensors = std::move(tensors), metadata = std::move(metadata)] {
        st::write_file(path, tensors, metadata);
      },
      [](Napi::Env e) { return e.Undefined(); });
}

void init(Napi::Env env, Napi::Object exports) {
  exports.Set("safetensorsOpen", Napi::Function::New(env, Open));
  exports.Set("safetensorsLoad", Napi::Function::New(env, Load));
  exports.Set("safetensorsClose", Napi::Function::New(env, Close));
  exports.Set("safetensorsSave", Napi::Function::New(env, Save));
}

}  // namespace

ZEROTH_NAPI_MODULE(safetensors, init);

}  // namespace zeroth::napi

/*
 * zeroth.h — the C ABI of the zeroth engine.
 *
 * Everything here is plain C so that tools in any language can link libzeroth.
 * Handles are opaque; every function reports failure through its return value
 * (a zeroth_status, or NULL for constructors) and leaves a thread-local message
 * in zeroth_last_error(). No function aborts the process on bad input.
 *
 * Versioning: ZEROTH_ABI_VERSION changes whenever a signature or a struct in
 * this header changes incompatibly. zeroth_version() returns the library's.
 */
#ifndef ZEROTH_H
#define ZEROTH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#  define ZEROTH_API __declspec(dllexport)
#else
#  define ZEROTH_API __attribute__((visibility("default")))
#endif

#define ZEROTH_VERSION_MAJOR 0
#define ZEROTH_VERSION_MINOR 1
#define ZEROTH_VERSION_PATCH 0
#define ZEROTH_ABI_VERSION 1

/* Stable error codes; the TypeScript ZerothError.code is the name without the prefix. */
typedef enum zeroth_status {
  ZEROTH_OK = 0,
  ZEROTH_E_INVALID_ARG = 1, /* an argument is out of its allowed range */
  ZEROTH_E_SHAPE = 2,       /* shapes do not agree, or a size overflows */
  ZEROTH_E_DTYPE = 3,       /* the dtype is not allowed here */
  ZEROTH_E_DEVICE = 4,      /* the device does not exist or cannot be used */
  ZEROTH_E_DISPOSED = 5,    /* the object was already freed */
  ZEROTH_E_FORMAT = 6,      /* a file or buffer is malformed */
  ZEROTH_E_UNSUPPORTED = 7, /* valid, but not implemented by this build */
  ZEROTH_E_OOM = 8,         /* an allocation failed */
  ZEROTH_E_IO = 9,          /* the operating system refused a file operation */
  ZEROTH_E_NAN = 10,        /* a loss or value was NaN or infinite */
  ZEROTH_E_ABORTED = 11,    /* the caller aborted a long job */
  ZEROTH_E_INTERNAL = 12    /* a bug in zeroth: please report it */
} zeroth_status;

/* Element types. Values are stable (they are written into trajectories). */
typedef enum zeroth_dtype {
  ZEROTH_F64 = 0,
  ZEROTH_F32 = 1,
  ZEROTH_F16 = 2,
  ZEROTH_BF16 = 3,
  ZEROTH_I32 = 4,
  ZEROTH_I8 = 5,
  ZEROTH_U8 = 6,
  ZEROTH_INT4 = 7, /* packed, see zeroth_int4_layout */
  ZEROTH_DTYPE_COUNT = 8
} zeroth_dtype;

typedef enum zeroth_device_type {
  ZEROTH_DEVICE_CPU = 0,
  ZEROTH_DEVICE_CUDA = 1
} zeroth_device_type;

typedef struct zeroth_device {
  zeroth_device_type type;
  int32_t index; /* 0 for the CPU */
} zeroth_device;

/*
 * Packed int4 layout (group-wise affine quantization of a 2-D weight [rows, cols]).
 *
 *   codes:  ceil(rows * cols / 2) bytes, packed by flat row-major element index:
 *           element i = r * cols + c is in byte i / 2, even i in the low nibble, odd i in
 *           the high nibble (with an odd `cols` a row may start in a high nibble).
 *           Codes are unsigned 0..15.
 *   scales: [rows, groups] in scale_dtype (F32 or F16), groups = ceil(cols / group_size)
 *   zeros:  [rows, groups] in scale_dtype, or absent when symmetric (zero point 8).
 *   value(r, c) = (code(r, c) - zero(r, g)) * scale(r, g),  g = c / group_size
 *
 * Groups run along the input (column) dimension, as in GPTQ/AWQ and llama.cpp.
 * A zero point is stored as a float so that a QZO-trained zero can be non-integral.
 */
typedef struct zeroth_int4_layout {
  int64_t rows;
  int64_t cols;
  int64_t group_size;    /* 32, 64, 128, ... or cols for one group per row */
  zeroth_dtype scale_dtype; /* ZEROTH_F32 or ZEROTH_F16 */
  int32_t symmetric;     /* 1: no zeros array, zero point is 8 */
} zeroth_int4_layout;

typedef struct zeroth_tensor zeroth_tensor; /* opaque */

#define ZEROTH_MAX_DIMS 8

/* Library version as MAJOR*10000 + MINOR*100 + PATCH, and the ABI version. */
ZEROTH_API int32_t zeroth_version(void);
ZEROTH_API int32_t zeroth_abi_version(void);

/* The message of the last failure on this thread ("" if none). Valid until the next call. */
ZEROTH_API const char* zeroth_last_error(void);
/* The code of the last failure on this thread. */
ZEROTH_API zeroth_status zeroth_last_status(void);
/* A stable name such as "E_SHAPE" for a status. */
ZEROTH_API const char* zeroth_status_name(zeroth_status status);

/* Size in bytes of one element (0 for INT4, which packs two per byte). */
ZEROTH_API size_t zeroth_dtype_size(zeroth_dtype dtype);
ZEROTH_API const char* zeroth_dtype_name(zeroth_dtype dtype);

/* Number of usable devices of a type (CUDA is initialised on the first call). */
ZEROTH_API int32_t zeroth_device_count(zeroth_device_type type);

/* A new zero-filled tensor; NULL on failure. */
ZEROTH_API zeroth_tensor* zeroth_tensor_create(zeroth_dtype dtype, const int64_t* shape, int32_t ndim,
                                               zeroth_device device);
/* A new tensor holding a copy of `bytes` (which must be exactly numel * dtype size). */
ZEROTH_API zeroth_tensor* zeroth_tensor_from_data(zeroth_dtype dtype, const int64_t* shape, int32_t ndim,
                                                  zeroth_device device, const void* data, size_t bytes);
/* Copy (to another device and/or dtype: float types convert with round-to-nearest-even). */
ZEROTH_API zeroth_tensor* zeroth_tensor_copy(const zeroth_tensor* src, zeroth_dtype dtype, zeroth_device device);
ZEROTH_API void zeroth_tensor_free(zeroth_tensor* t);

ZEROTH_API int32_t zeroth_tensor_ndim(const zeroth_tensor* t);
ZEROTH_API int64_t zeroth_tensor_dim(const zeroth_tensor* t, int32_t axis);
ZEROTH_API int64_t zeroth_tensor_numel(const zeroth_tensor* t);
ZEROTH_API zeroth_dtype zeroth_tensor_dtype(const zeroth_tensor* t);
ZEROTH_API zeroth_device zeroth_tensor_device(const zeroth_tensor* t);
/* Copy the elements into host memory `out` of exactly `bytes` bytes. */
ZEROTH_API zeroth_status zeroth_tensor_read(const zeroth_tensor* t, void* out, size_t bytes);

/* Philox4x32-10 standard normal / Rademacher value of element `index` of stream (seed, stream). */
ZEROTH_API float zeroth_rng_normal(uint64_t seed, uint64_t stream, uint64_t index);
ZEROTH_API float zeroth_rng_rademacher(uint64_t seed, uint64_t stream, uint64_t index);
/* The documented stream id of a parameter name (FNV-1a 64 of its UTF-8 bytes). */
ZEROTH_API uint64_t zeroth_stream_id(const char* name, size_t length);

/* In place: t += scale * z(seed, stream) for an f32/f16/bf16 tensor. */
ZEROTH_API zeroth_status zeroth_perturb(zeroth_tensor* t, uint64_t seed, uint64_t stream, float scale);

#ifdef __cplusplus
}
#endif
#endif /* ZEROTH_H */

/* dtype.c — dtype names, sizes and torch's type-promotion rule; device names. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/tensor.h"

static const size_t k_size[SF_NDTYPES] = {4, 2, 2, 8, 4, 1, 1, 8};
static const char *k_name[SF_NDTYPES] = {"f32", "bf16", "f16", "i64", "i32", "u8", "bool", "f64"};

size_t sf_dtype_size(sf_dtype dt) { return (unsigned)dt < SF_NDTYPES ? k_size[dt] : 0; }
const char *sf_dtype_name(sf_dtype dt) { return (unsigned)dt < SF_NDTYPES ? k_name[dt] : "?"; }
bool sf_dtype_is_float(sf_dtype dt) { return dt == SF_F32 || dt == SF_BF16 || dt == SF_F16 || dt == SF_F64; }

int sf_dtype_from_name(const char *name, sf_dtype *out) {
  static const struct { const char *alias; sf_dtype dt; } k_alias[] = {
      {"f32", SF_F32},     {"float32", SF_F32},   {"float", SF_F32},     {"bf16", SF_BF16},
      {"bfloat16", SF_BF16}, {"f16", SF_F16},     {"float16", SF_F16},   {"half", SF_F16},
      {"i64", SF_I64},     {"int64", SF_I64},     {"long", SF_I64},      {"i32", SF_I32},
      {"int32", SF_I32},   {"int", SF_I32},       {"u8", SF_U8},         {"uint8", SF_U8},
      {"byte", SF_U8},     {"bool", SF_BOOL},     {"f64", SF_F64},       {"float64", SF_F64},
      {"double", SF_F64},
  };
  for (size_t i = 0; i < sizeof k_alias / sizeof k_alias[0]; i++)
    if (!strcmp(name, k_alias[i].alias)) { *out = k_alias[i].dt; return 0; }
  return sf_error("unknown dtype '%s' (accepted: f32, bf16, f16, i64, i32, u8, bool, f64 and torch "
                  "names such as float32, bfloat16, float16, int64)", name);
}

/* torch.result_type for two tensors of different categories: bool < integers < floats;
 * among floats bf16 and f16 promote to f32; u8 with a signed int goes to the signed one. */
sf_dtype sf_promote(sf_dtype a, sf_dtype b) {
  if (a == b) return a;
  bool fa = sf_dtype_is_float(a), fb = sf_dtype_is_float(b);
  if (fa && fb) {
    if (a == SF_F64 || b == SF_F64) return SF_F64;
    return SF_F32; /* bf16+f16, or either with f32 */
  }
  if (fa) return a;
  if (fb) return b;
  if (a == SF_BOOL) return b;
  if (b == SF_BOOL) return a;
  if (a == SF_I64 || b == SF_I64) return SF_I64;
  if (a == SF_I32 || b == SF_I32) return SF_I32;
  return SF_U8;
}

const char *sf_device_str(sf_device d, char *buf, size_t n) {
  switch (d.type) {
  case SF_DEV_CPU: snprintf(buf, n, "cpu"); break;
  case SF_DEV_CUDA: snprintf(buf, n, "cuda:%d", d.index); break;
  case SF_DEV_EMU: snprintf(buf, n, "emu:%d", d.index); break;
  default: snprintf(buf, n, "device?%d", d.type);
  }
  return buf;
}

int sf_device_parse(const char *s, sf_device *out) {
  const char *kinds[] = {"cpu", "cuda", "emu"};
  for (int ty = 0; ty < 3; ty++) {
    size_t n = strlen(kinds[ty]);
    if (strncmp(s, kinds[ty], n)) continue;
    if (s[n] == 0) { out->type = (int8_t)ty; out->index = 0; return 0; }
    if (s[n] == ':' && ty != SF_DEV_CPU) {
      char *end;
      long idx = strtol(s + n + 1, &end, 10);
      if (*end == 0 && end != s + n + 1 && idx >= 0 && idx < 127) {
        out->type = (int8_t)ty;
        out->index = (int8_t)idx;
        return 0;
      }
    }
  }
  return sf_error("unknown device '%s' (accepted: cpu, cuda, cuda:N, emu, emu:N)", s);
}

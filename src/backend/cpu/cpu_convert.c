/* cpu_convert.c — gather a strided array of any dtype into a float/double/int64 compute buffer and
 * scatter it back: the only place the CPU backend spells out per-dtype conversions. Casting follows
 * torch: float->int truncates, u8/i32 wrap modulo 2^n, bool is (x != 0), halves round to nearest even. */
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "core/half.h"

/* ---- load: element i of a strided array (stride s in elements) into buf[i] ---- */
#define LOOP_LOAD(ST, EXPR)                                                                        \
  do {                                                                                             \
    const ST *q = (const ST *)p;                                                                   \
    if (s == 1) for (int64_t i = 0; i < n; i++) { ST v = q[i]; buf[i] = (EXPR); }                  \
    else for (int64_t i = 0; i < n; i++) { ST v = q[i * s]; buf[i] = (EXPR); }                     \
  } while (0)

#define LOAD_SWITCH(CT, FLOATCONV)                                                                 \
  switch (dt) {                                                                                    \
  case SF_F32: LOOP_LOAD(float, (CT)FLOATCONV(v)); break;                                          \
  case SF_BF16: LOOP_LOAD(uint16_t, (CT)FLOATCONV(sf_bf16_to_f32(v))); break;                      \
  case SF_F16: LOOP_LOAD(uint16_t, (CT)FLOATCONV(sf_f16_to_f32(v))); break;                        \
  case SF_F64: LOOP_LOAD(double, (CT)FLOATCONV(v)); break;                                         \
  case SF_I64: LOOP_LOAD(int64_t, (CT)v); break;                                                   \
  case SF_I32: LOOP_LOAD(int32_t, (CT)v); break;                                                   \
  case SF_U8: LOOP_LOAD(uint8_t, (CT)v); break;                                                    \
  case SF_BOOL: LOOP_LOAD(uint8_t, (CT)(v != 0)); break;                                           \
  default: break;                                                                                  \
  }

#define ID(x) (x)
void sf_cpu_load_f(sf_dtype dt, const char *p, int64_t s, int64_t n, float *buf) {
  if (dt == SF_F32 && s == 1) { memcpy(buf, p, (size_t)n * 4); return; }
  LOAD_SWITCH(float, ID)
}
void sf_cpu_load_d(sf_dtype dt, const char *p, int64_t s, int64_t n, double *buf) {
  if (dt == SF_F64 && s == 1) { memcpy(buf, p, (size_t)n * 8); return; }
  LOAD_SWITCH(double, ID)
}
void sf_cpu_load_i(sf_dtype dt, const char *p, int64_t s, int64_t n, int64_t *buf) {
  if (dt == SF_I64 && s == 1) { memcpy(buf, p, (size_t)n * 8); return; }
  LOAD_SWITCH(int64_t, sf_cpu_d2i)
}

/* ---- store: buf[i] into element i of a strided array of dtype dt ---- */
#define LOOP_STORE(ST, EXPR)                                                                       \
  do {                                                                                             \
    ST *q = (ST *)p;                                                                               \
    if (s == 1) for (int64_t i = 0; i < n; i++) { __typeof__(buf[0]) v = buf[i]; q[i] = (EXPR); }  \
    else for (int64_t i = 0; i < n; i++) { __typeof__(buf[0]) v = buf[i]; q[i * s] = (EXPR); }     \
  } while (0)

void sf_cpu_store_f(sf_dtype dt, char *p, int64_t s, int64_t n, const float *buf) {
  switch (dt) {
  case SF_F32: if (s == 1) memcpy(p, buf, (size_t)n * 4); else LOOP_STORE(float, v); break;
  case SF_BF16: LOOP_STORE(uint16_t, sf_f32_to_bf16(v)); break;
  case SF_F16: LOOP_STORE(uint16_t, sf_f32_to_f16(v)); break;
  case SF_F64: LOOP_STORE(double, (double)v); break;
  case SF_I64: LOOP_STORE(int64_t, sf_cpu_d2i(v)); break;
  case SF_I32: LOOP_STORE(int32_t, sf_cpu_d2i32(v)); break;
  case SF_U8: LOOP_STORE(uint8_t, (uint8_t)(uint64_t)sf_cpu_d2i(v)); break;
  case SF_BOOL: LOOP_STORE(uint8_t, (uint8_t)(v != 0)); break;
  default: break;
  }
}
void sf_cpu_store_d(sf_dtype dt, char *p, int64_t s, int64_t n, const double *buf) {
  switch (dt) {
  case SF_F32: LOOP_STORE(float, (float)v); break;
  case SF_BF16: LOOP_STORE(uint16_t, sf_f32_to_bf16((float)v)); break;
  case SF_F16: LOOP_STORE(uint16_t, sf_f32_to_f16((float)v)); break;
  case SF_F64: if (s == 1) memcpy(p, buf, (size_t)n * 8); else LOOP_STORE(double, v); break;
  case SF_I64: LOOP_STORE(int64_t, sf_cpu_d2i(v)); break;
  case SF_I32: LOOP_STORE(int32_t, sf_cpu_d2i32(v)); break;
  case SF_U8: LOOP_STORE(uint8_t, (uint8_t)(uint64_t)sf_cpu_d2i(v)); break;
  case SF_BOOL: LOOP_STORE(uint8_t, (uint8_t)(v != 0)); break;
  default: break;
  }
}
void sf_cpu_store_i(sf_dtype dt, char *p, int64_t s, int64_t n, const int64_t *buf) {
  switch (dt) {
  case SF_F32: LOOP_STORE(float, (float)v); break;
  case SF_BF16: LOOP_STORE(uint16_t, sf_f32_to_bf16((float)v)); break;
  case SF_F16: LOOP_STORE(uint16_t, sf_f32_to_f16((float)v)); break;
  case SF_F64: LOOP_STORE(double, (double)v); break;
  case SF_I64: if (s == 1) memcpy(p, buf, (size_t)n * 8); else LOOP_STORE(int64_t, v); break;
  case SF_I32: LOOP_STORE(int32_t, (int32_t)(uint32_t)(uint64_t)v); break;
  case SF_U8: LOOP_STORE(uint8_t, (uint8_t)(uint64_t)v); break;
  case SF_BOOL: LOOP_STORE(uint8_t, (uint8_t)(v != 0)); break;
  default: break;
  }
}

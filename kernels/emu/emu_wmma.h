/* emu_wmma.h — the warp matrix (tensor-core) API `nvcuda::wmma` for the emulated device: 16x16x16 tiles of
 * __nv_bfloat16 / __half (f32 accumulate) and f32 accumulators. Included by emu.h.
 *
 * As on the GPU a fragment is spread over the 32 lanes of a warp, 8 elements per lane, and which element
 * of the tile a lane holds is unspecified: here the mapping is a scramble (element i of lane l is tile
 * entry (37 * (8 l + i)) mod 256), so a kernel that assumes a layout gives wrong results instead of
 * passing by luck. mma_sync is a warp barrier (called from divergent code it deadlocks, which the emulator
 * reports) and exchanges the operands through the warp's buffer in the runtime, accumulating in f32 in k
 * order; loads and stores touch only the lane's own entries (no barrier: they are the bulk of the calls,
 * and a store is no more a memory fence here than on the GPU). The hardware's requirements are checked and
 * fail the launch: 256-bit aligned pointers and ldm a multiple of 16 bytes. */
#ifndef SF_EMU_WMMA_H
#define SF_EMU_WMMA_H

extern "C" void sf_emu_trap(const char *why); /* fails the running launch with `why` (the thread continues) */
extern "C" float *sf_emu_warp_scratch(void);  /* 512 floats shared by the running warp's lanes */

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "emu wmma: only the 16x16x16 shape");
  enum { num_elements = 8 };
  T x[8];
};

/* tile entry (row * 16 + col) held by element i of this lane */
static inline int sf_wmma_slot(int lane, int i) { return (37 * (8 * lane + i)) & 255; }

static inline float sf_wmma_f(float v) { return v; }
static inline float sf_wmma_f(__nv_bfloat16 v) { return __bfloat162float(v); }
static inline float sf_wmma_f(__half v) { return __half2float(v); }
template <class T> static inline T sf_wmma_cast(float v);
template <> inline float sf_wmma_cast<float>(float v) { return v; }
template <> inline __nv_bfloat16 sf_wmma_cast<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <> inline __half sf_wmma_cast<__half>(float v) { return __float2half_rn(v); }

static inline void sf_wmma_check(const void *p, unsigned ldm, size_t esize) {
  if ((uintptr_t)p % 32) sf_emu_trap("wmma: matrix pointer not 256-bit aligned");
  if ((ldm * esize) % 16) sf_emu_trap("wmma: ldm is not a multiple of 16 bytes");
}

/* element (r, c) of a 16x16 tile at p: row-major p[r * ldm + c], column-major p[c * ldm + r] */
template <class E, class T> static inline void sf_wmma_load(E *x, const T *p, unsigned ldm, bool row) {
  sf_wmma_check(p, ldm, sizeof(T));
  const int lane = sf_emu_cur->lane;
  for (int i = 0; i < 8; i++) {
    const int s = sf_wmma_slot(lane, i), r = s >> 4, c = s & 15;
    x[i] = sf_wmma_cast<E>(sf_wmma_f(row ? p[r * ldm + c] : p[c * ldm + r]));
  }
}

template <class T, class L> static inline void load_matrix_sync(fragment<matrix_a, 16, 16, 16, T, L> &a, const T *p, unsigned ldm) {
  sf_wmma_load(a.x, p, ldm, std::is_same<L, row_major>::value);
}
template <class T, class L> static inline void load_matrix_sync(fragment<matrix_b, 16, 16, 16, T, L> &b, const T *p, unsigned ldm) {
  sf_wmma_load(b.x, p, ldm, std::is_same<L, row_major>::value);
}
static inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &c, const float *p, unsigned ldm, layout_t l) {
  sf_wmma_load(c.x, p, ldm, l == mem_row_major);
}
static inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &c, unsigned ldm, layout_t l) {
  sf_wmma_check(p, ldm, sizeof(float));
  const int lane = sf_emu_cur->lane;
  for (int i = 0; i < 8; i++) {
    const int s = sf_wmma_slot(lane, i), r = s >> 4, cc = s & 15;
    (l == mem_row_major ? p[r * ldm + cc] : p[cc * ldm + r]) = c.x[i];
  }
}
template <class U, class T, class L> static inline void fill_fragment(fragment<U, 16, 16, 16, T, L> &f, T v) {
  for (int i = 0; i < 8; i++) f.x[i] = v;
}
template <class U, class T, class L, class V> static inline void fill_fragment(fragment<U, 16, 16, 16, T, L> &f, V v) {
  for (int i = 0; i < 8; i++) f.x[i] = sf_wmma_cast<T>((float)v);
}

/* d = a b + c (d may be c) */
template <class T, class LA, class LB>
static inline void mma_sync(fragment<accumulator, 16, 16, 16, float> &d, const fragment<matrix_a, 16, 16, 16, T, LA> &a,
                            const fragment<matrix_b, 16, 16, 16, T, LB> &b, const fragment<accumulator, 16, 16, 16, float> &c) {
  const int lane = sf_emu_cur->lane;
  float *xa = sf_emu_warp_scratch(), *xb = xa + 256;
  for (int i = 0; i < 8; i++) {
    xa[sf_wmma_slot(lane, i)] = sf_wmma_f(a.x[i]);
    xb[sf_wmma_slot(lane, i)] = sf_wmma_f(b.x[i]);
  }
  sf_emu_syncwarp();
  float out[8];
  for (int i = 0; i < 8; i++) {
    const int s = sf_wmma_slot(lane, i), r = s >> 4, cc = s & 15;
    float acc = c.x[i];
    for (int k = 0; k < 16; k++) acc = fmaf(xa[r * 16 + k], xb[k * 16 + cc], acc);
    out[i] = acc;
  }
  sf_emu_syncwarp(); /* every lane has read the operands before any lane's next mma overwrites them */
  for (int i = 0; i < 8; i++) d.x[i] = out[i];
}

} // namespace wmma
} // namespace nvcuda

#endif

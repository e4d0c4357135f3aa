/* cpu_random.c — normal / uniform draws from the shared Philox generator: element i of out is
 * sf_philox_normal(seed, offset + i) (or _uniform), so every device produces the same numbers. */
#include "backend/cpu/cpu_internal.h"
#include "core/philox.h"

int sf_cpu_random(sf_tensor *out, uint64_t seed, uint64_t offset, int kind) {
  if (kind != 0 && kind != 1) return sf_error("cpu random: unknown distribution kind %d (0 normal, 1 uniform)", kind);
  if (!sf_dtype_is_float(out->dtype)) return sf_error("cpu random: needs a float tensor, got %s", sf_dtype_name(out->dtype));
  if (!sf_is_contiguous(out)) return sf_error("cpu random: out must be contiguous");
  int64_t n = sf_numel(out);
  size_t es = sf_dtype_size(out->dtype);
  char *base = (char *)sf_data_ptr(out);
  int64_t nchunks = (n + SF_CPU_CHUNK - 1) / SF_CPU_CHUNK;
  int nt = sf_cpu_threads(n, 4096); /* each element costs a Philox block + log/cos: worth threads early */
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t ch = 0; ch < nchunks; ch++) {
    int64_t start = ch * SF_CPU_CHUNK, m = n - start < SF_CPU_CHUNK ? n - start : SF_CPU_CHUNK;
    float buf[SF_CPU_CHUNK];
    if (kind == 0) for (int64_t i = 0; i < m; i++) buf[i] = sf_philox_normal(seed, offset + (uint64_t)(start + i));
    else for (int64_t i = 0; i < m; i++) buf[i] = sf_philox_uniform(seed, offset + (uint64_t)(start + i));
    sf_cpu_store_f(out->dtype, base + start * (int64_t)es, 1, m, buf);
  }
  return 0;
}

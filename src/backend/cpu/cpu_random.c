/* cpu_random.c — normal / uniform draws from the shared Philox generator: element i of out is
 * sf_philox_normal(seed, offset + i) (or _uniform), so every device produces the same numbers. */
#include "backend/cpu/cpu_internal.h"
#include "core/philox.h"

typedef struct {
  sf_dtype dt;
  char *base;
  size_t es;
  int64_t n;
  uint64_t seed, offset;
  int kind;
} rand_job;

/* thread t fills whole chunks [nchunks t / nt, nchunks (t+1) / nt) */
static void rand_part(void *vj, int t, int nt) {
  const rand_job *j = vj;
  int64_t nchunks = (j->n + SF_CPU_CHUNK - 1) / SF_CPU_CHUNK;
  for (int64_t ch = nchunks * t / nt; ch < nchunks * (t + 1) / nt; ch++) {
    int64_t start = ch * SF_CPU_CHUNK, m = j->n - start < SF_CPU_CHUNK ? j->n - start : SF_CPU_CHUNK;
    float buf[SF_CPU_CHUNK];
    if (j->kind == 0) for (int64_t i = 0; i < m; i++) buf[i] = sf_philox_normal(j->seed, j->offset + (uint64_t)(start + i));
    else for (int64_t i = 0; i < m; i++) buf[i] = sf_philox_uniform(j->seed, j->offset + (uint64_t)(start + i));
    sf_cpu_store_f(j->dt, j->base + start * (int64_t)j->es, 1, m, buf);
  }
}

int sf_cpu_random(sf_tensor *out, uint64_t seed, uint64_t offset, int kind) {
  if (kind != 0 && kind != 1) return sf_error("cpu random: unknown distribution kind %d (0 normal, 1 uniform)", kind);
  if (!sf_dtype_is_float(out->dtype)) return sf_error("cpu random: needs a float tensor, got %s", sf_dtype_name(out->dtype));
  if (!sf_is_contiguous(out)) return sf_error("cpu random: out must be contiguous");
  int64_t n = sf_numel(out);
  size_t es = sf_dtype_size(out->dtype);
  char *base = (char *)sf_data_ptr(out);
  rand_job j = {out->dtype, base, es, n, seed, offset, kind};
  int64_t nchunks = (n + SF_CPU_CHUNK - 1) / SF_CPU_CHUNK;
  /* each element costs a Philox block + log/cos: worth threads early */
  int nt = sf_cpu_threads(n, 4096);
  if (nt > nchunks) nt = (int)nchunks;
  sf_cpu_parallel(nt, rand_part, &j);
  return 0;
}

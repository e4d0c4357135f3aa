/* wan_cache.c — the per-layer KV cache (Self-Forcing bookkeeping: global_end / local_end, sink, rolling
 * eviction; spec 3.4) and the cross-attention cache (filled once per prompt; spec 3.5). Sized from the
 * model config, never from the 1.3B constants (see the Self-Forcing-Plus head/layer mix-up, spec 3.7). */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/ops.h"
#include "models/wan.h"

sf_wan_kv *sf_wan_kv_new(const sf_wan_model *m, int64_t batch, int64_t frames, int64_t tokens_per_frame) {
  const sf_wan_config *c = &m->cfg;
  if (!c->causal) return sf_error("wan kv_cache: the model is not causal (load it with causal=true)"), NULL;
  if (batch < 1) return sf_error("wan kv_cache: batch must be >= 1"), NULL;
  const int64_t cap = c->local_attn_size != -1 ? c->local_attn_size : frames;
  if (cap < 1) return sf_error("wan kv_cache: give frames=N (the number of latent frames the global cache holds)"), NULL;
  sf_wan_kv *kv = calloc(1, sizeof *kv);
  if (!kv) return sf_error("wan kv_cache: out of memory"), NULL;
  kv->refcount = 1;
  kv->num_layers = (int)c->num_layers;
  kv->batch = batch;
  kv->heads = c->num_heads;                /* heads, not layers (spec 3.7) */
  kv->head_dim = c->dim / c->num_heads;
  kv->capacity_frames = cap;
  kv->local_attn_size = c->local_attn_size;
  kv->sink_size = c->sink_size;
  kv->dtype = m->dtype;
  kv->device = m->device;
  const size_t L = (size_t)kv->num_layers;
  kv->k = calloc(L, sizeof(sf_tensor *));
  kv->v = calloc(L, sizeof(sf_tensor *));
  kv->global_end = calloc(L, sizeof(int64_t));
  kv->local_end = calloc(L, sizeof(int64_t));
  kv->slot_frame = calloc(L, sizeof(int64_t *));
  kv->ids = malloc(sizeof(int64_t) * (size_t)cap);
  kv->gk = calloc(L, sizeof(sf_tensor **));
  kv->gv = calloc(L, sizeof(sf_tensor **));
  kv->gframe = calloc(L, sizeof(int64_t *));
  if (!kv->k || !kv->v || !kv->global_end || !kv->local_end || !kv->slot_frame || !kv->ids || !kv->gk || !kv->gv || !kv->gframe)
    goto oom;
  for (size_t i = 0; i < L; i++) {
    kv->slot_frame[i] = malloc(sizeof(int64_t) * (size_t)cap);
    kv->gk[i] = calloc((size_t)cap, sizeof(sf_tensor *));
    kv->gv[i] = calloc((size_t)cap, sizeof(sf_tensor *));
    kv->gframe[i] = calloc((size_t)cap, sizeof(int64_t));
    if (!kv->slot_frame[i] || !kv->gk[i] || !kv->gv[i] || !kv->gframe[i]) goto oom;
    for (int64_t f = 0; f < cap; f++) kv->slot_frame[i][f] = -1;
  }
  if (tokens_per_frame > 0) {
    kv->S = tokens_per_frame;
    int64_t shp[4] = {batch, cap * tokens_per_frame, kv->heads, kv->head_dim};
    for (size_t i = 0; i < L; i++) {
      kv->k[i] = sf_zeros(4, shp, kv->dtype, kv->device);
      kv->v[i] = sf_zeros(4, shp, kv->dtype, kv->device);
      if (!kv->k[i] || !kv->v[i]) {
        sf_wan_kv_free(kv);
        return NULL;
      }
    }
  }
  return kv;
oom:
  sf_wan_kv_free(kv);
  sf_error("wan kv_cache: out of memory");
  return NULL;
}

/* a new prompt / video: indices to zero and buffers cleared (as the pipelines' re-allocation) */
void sf_wan_kv_clear_grad(sf_wan_kv *kv) {
  for (int i = 0; kv->gk && kv->gv && i < kv->num_layers; i++)
    for (int64_t f = 0; f < kv->capacity_frames; f++) {
      if (kv->gk[i]) sf_release(kv->gk[i][f]), kv->gk[i][f] = NULL;
      if (kv->gv[i]) sf_release(kv->gv[i][f]), kv->gv[i][f] = NULL;
    }
}

void sf_wan_kv_reset(sf_wan_kv *kv) {
  sf_wan_kv_clear_grad(kv);
  for (int i = 0; i < kv->num_layers; i++) {
    kv->global_end[i] = kv->local_end[i] = 0;
    for (int64_t f = 0; f < kv->capacity_frames; f++) kv->slot_frame[i][f] = -1;
    if (kv->k[i]) sf_fill_(kv->k[i], 0.0);
    if (kv->v[i]) sf_fill_(kv->v[i], 0.0);
  }
}

int sf_wan_kv_default_plan(const sf_wan_kv *kv, int layer, int64_t f0, int64_t n, sf_wan_kv_plan *p) {
  const int64_t S = kv->S > 0 ? kv->S : 1, G = kv->global_end[layer] / S, Lend = kv->local_end[layer] / S;
  const int64_t cap = kv->capacity_frames, sink = kv->sink_size, cur_end = f0 + n;
  memset(p, 0, sizeof *p);
  int64_t new_end = Lend + (cur_end - G);
  if (kv->local_attn_size != -1 && cur_end > G && Lend + n > cap) {
    const int64_t evict = Lend + n - cap, keep = Lend - evict - sink;
    if (keep < 0)
      return sf_error("wan kv cache: cannot evict %lld frames keeping %lld sink frames (local_attn_size too small for the chunk)",
                      (long long)evict, (long long)sink);
    p->roll_dst = sink, p->roll_src = sink + evict, p->roll_n = keep;
    new_end -= evict;
  }
  p->write_at = new_end - n, p->write_from = 0, p->write_n = n;
  p->n_read = 1, p->read_lo[0] = new_end - cap > 0 ? new_end - cap : 0, p->read_hi[0] = new_end;
  p->advance = true, p->global_end = cur_end, p->local_end = new_end;
  return 0;
}

int sf_wan_kv_check_plan(const sf_wan_kv *kv, int64_t n, const sf_wan_kv_plan *p) {
  const int64_t cap = kv->capacity_frames;
  if (p->roll_n < 0 || (p->roll_n > 0 && (p->roll_dst < 0 || p->roll_src < p->roll_dst || p->roll_src + p->roll_n > cap)))
    return sf_error("wan kv cache plan: roll of %lld slots from %lld to %lld does not fit the %lld-frame cache",
                    (long long)p->roll_n, (long long)p->roll_src, (long long)p->roll_dst, (long long)cap);
  if (p->write_n < 0 || p->write_from < 0 || p->write_from + p->write_n > n || p->write_at < 0 || p->write_at + p->write_n > cap)
    return sf_error("wan kv cache: writing frames %lld..%lld of this call needs slots [%lld, %lld) but the cache holds %lld frames; "
                    "allocate more frames or use local_attn_size",
                    (long long)p->write_from, (long long)(p->write_from + p->write_n - 1), (long long)p->write_at,
                    (long long)(p->write_at + p->write_n), (long long)cap);
  if (p->n_read < 1 || p->n_read > 2) return sf_error("wan kv cache plan: 1 or 2 read ranges, got %d", p->n_read);
  int64_t total = 0;
  for (int r = 0; r < p->n_read; r++) {
    if (p->read_lo[r] < 0 || p->read_hi[r] < p->read_lo[r] || p->read_hi[r] > cap)
      return sf_error("wan kv cache plan: read range [%lld, %lld) outside the %lld-frame cache", (long long)p->read_lo[r],
                      (long long)p->read_hi[r], (long long)cap);
    total += p->read_hi[r] - p->read_lo[r];
  }
  if (total < 1) return sf_error("wan kv cache plan: the read ranges are empty (attention needs a key)");
  if (p->advance && (p->local_end < 0 || p->local_end > cap || p->global_end < 0))
    return sf_error("wan kv cache plan: end indices global %lld / local %lld do not fit the %lld-frame cache",
                    (long long)p->global_end, (long long)p->local_end, (long long)cap);
  return 0;
}

void sf_wan_kv_zero(sf_wan_kv *kv) {
  for (int i = 0; i < kv->num_layers; i++) {
    if (kv->k[i]) sf_fill_(kv->k[i], 0.0);
    if (kv->v[i]) sf_fill_(kv->v[i], 0.0);
  }
}

void sf_wan_kv_free(sf_wan_kv *kv) {
  if (!kv || --kv->refcount > 0) return;
  sf_wan_kv_clear_grad(kv);
  for (int i = 0; i < kv->num_layers; i++) {
    if (kv->k) sf_release(kv->k[i]);
    if (kv->v) sf_release(kv->v[i]);
    if (kv->slot_frame) free(kv->slot_frame[i]);
    if (kv->gk) free(kv->gk[i]);
    if (kv->gv) free(kv->gv[i]);
    if (kv->gframe) free(kv->gframe[i]);
  }
  free(kv->k), free(kv->v), free(kv->global_end), free(kv->local_end), free(kv->slot_frame), free(kv->ids);
  free(kv->gk), free(kv->gv), free(kv->gframe);
  free(kv);
}

sf_wan_xcache *sf_wan_xcache_new(const sf_wan_model *m) {
  sf_wan_xcache *c = calloc(1, sizeof *c);
  if (!c) return sf_error("wan crossattn_cache: out of memory"), NULL;
  c->refcount = 1;
  c->num_layers = (int)m->cfg.num_layers;
  const size_t L = (size_t)c->num_layers;
  c->is_init = calloc(L, sizeof(bool));
  c->k = calloc(L, sizeof(sf_tensor *));
  c->v = calloc(L, sizeof(sf_tensor *));
  c->k_img = calloc(L, sizeof(sf_tensor *));
  c->v_img = calloc(L, sizeof(sf_tensor *));
  if (!c->is_init || !c->k || !c->v || !c->k_img || !c->v_img) {
    sf_wan_xcache_free(c);
    return sf_error("wan crossattn_cache: out of memory"), NULL;
  }
  return c;
}

void sf_wan_xcache_reset(sf_wan_xcache *c) {
  for (int i = 0; i < c->num_layers; i++) {
    c->is_init[i] = false;
    sf_release(c->k[i]), sf_release(c->v[i]), sf_release(c->k_img[i]), sf_release(c->v_img[i]);
    c->k[i] = c->v[i] = c->k_img[i] = c->v_img[i] = NULL;
  }
}

static int zero_slot(sf_tensor **t) {
  if (!*t) return 0;
  sf_tensor *z = sf_zeros((*t)->ndim, (*t)->shape, (*t)->dtype, sf_device_of(*t));
  if (!z) return -1;
  sf_release(*t);
  *t = z;
  return 0;
}

int sf_wan_xcache_zero(sf_wan_xcache *c) {
  for (int i = 0; i < c->num_layers; i++) {
    if (!c->is_init[i]) continue;
    if (zero_slot(&c->k[i]) || zero_slot(&c->v[i]) || zero_slot(&c->k_img[i]) || zero_slot(&c->v_img[i])) return -1;
  }
  return 0;
}

void sf_wan_xcache_free(sf_wan_xcache *c) {
  if (!c || --c->refcount > 0) return;
  if (c->k && c->v && c->k_img && c->v_img) sf_wan_xcache_reset(c);
  free(c->is_init), free(c->k), free(c->v), free(c->k_img), free(c->v_img);
  free(c);
}

/* wan_internal.h — shared between the src/models/wan_*.c files (not a public interface). */
#ifndef SF_WAN_INTERNAL_H
#define SF_WAN_INTERNAL_H

#include <stdlib.h>
#include <string.h>

#include "backend/nn_ops.h"
#include "models/wan.h"

enum { SF_PK_WEIGHT = 0, SF_PK_BIAS, SF_PK_NORM, SF_PK_MOD };

typedef struct sf_wan_param_spec {
  char name[96];
  int ndim;
  int64_t shape[5];
  int kind;
  int64_t fan_in;
} sf_wan_param_spec;

/* the KV cache's gradient path (wan_kv_grad.c): record a grad-mode write of frames [src0, src0 + nframes)
 * of k, v into the slots from slot0; move the graph of nframes slots from src to dst with a grad-mode eviction; read tokens [lo, end)
 * of layer's k (which = 0) or v (1) as a copy carrying that path (a plain copy under no_grad / detach) */
int sf_wan_kv_grad_write(sf_wan_kv *kv, int layer, int64_t slot0, int64_t nframes, int64_t src0, sf_tensor *k, sf_tensor *v);
void sf_wan_kv_grad_move(sf_wan_kv *kv, int layer, int64_t dst, int64_t src, int64_t nframes);
sf_tensor *sf_wan_kv_grad_read(sf_wan_kv *kv, int layer, int which, int64_t lo, int64_t end);

/* every parameter of a config, in a fixed order (caller frees *out) */
int sf_wan_param_specs(const sf_wan_config *c, sf_wan_param_spec **out, int *count);
/* parameter by printf-style name with one integer (the layer); error when missing */
sf_tensor *sf_wan_paramf(const sf_wan_model *m, const char *fmt, long long i);

/* capture plumbing used by the forward: for one attention call, decide whether any capture wants it,
 * prepare the desc buffers, and file the record afterwards */
typedef struct sf_cap_call {
  int layer;
  bool cross;
  int img;                  /* i2v cross-attention: 1 for the image half */
  int64_t B, H;
  int64_t nqg, nkg;         /* groups in this call */
  int64_t q_group, k_group; /* tokens per group */
  const int64_t *q_ids;     /* absolute frame id per query group */
  const int64_t *k_ids;     /* absolute id per key group (frame, or context token index) */
  const int64_t *kv_lo, *kv_hi; /* visibility per query group (NULL = all), in key tokens */
  int64_t chunk;            /* tag */
  const sf_wan_tag *tag;
} sf_cap_call;

/* sets desc capture fields (allocating buffers on `dev`) when some capture wants this call; returns
 * the number of interested captures (0 = none), -1 on error */
int sf_wan_capture_begin(sf_wan_model *m, const sf_cap_call *call, sf_attn_desc *desc, sf_device dev);
/* files the buffers into each interested capture and releases them */
int sf_wan_capture_end(sf_wan_model *m, const sf_cap_call *call, sf_attn_desc *desc);

/* strdup is POSIX, not C11 */
static inline char *wan_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

#endif

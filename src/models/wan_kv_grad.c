/* wan_kv_grad.c — the KV cache's gradient path as PyTorch routes it through Self-Forcing's in-place
 * cache writes (`kv_cache["k"][:, a:b] = roped_key`, recorded as CopySlices).
 *
 * In PyTorch a write made with grad mode on puts the source's graph over its slots; a write under
 * no_grad (the denoising steps before the exit step, the context pass) changes the values but leaves
 * the graph as it was. A grad-mode read of the cache therefore attends over the CURRENT values, while
 * the gradient of each slot flows to the LAST grad-mode write of that slot — for Self-Forcing's rollout,
 * an earlier block's exit-step K/V, whose values the context pass has since replaced (a straight-through
 * path). A grad-mode eviction (`cache[:, s:s+n] = cache[:, s+e:s+e+n].clone()`) moves the slots' graph
 * with their values; a no-grad one leaves the graph at the slot index.
 *
 * sfwb keeps, per layer and frame slot, a handle on the source's graph and the frame inside the source.
 * A handle is a tensor of the source's shape over a one-element buffer (stride 0) that shares the
 * source's grad_fn: it keeps the graph alive without keeping the source's values (the cache holds them).
 * A read is one autograd node ("kv_cache_read") whose inputs are the handles of the visible slots; its
 * output is a copy of the visible values (later writes must not change what backward sees), and its
 * backward hands each source the gradient rows of the slots it owns. */
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "core/error.h"
#include "core/ops.h"
#include "models/wan_internal.h"

/* a handle on src's graph (new reference), NULL when src needs no gradient */
static sf_tensor *graph_handle(sf_tensor *src) {
  if (!src->requires_grad) return NULL;
  if (!src->grad_fn) return sf_retain(src); /* a leaf: the edge needs the tensor itself */
  sf_storage *st = sf_storage_new(sf_device_of(src), sf_dtype_size(src->dtype));
  if (!st) return NULL;
  int64_t stride[SF_MAX_DIMS] = {0};
  sf_tensor *h = sf_tensor_from_storage(st, src->dtype, src->ndim, src->shape, stride, 0);
  sf_storage_release(st);
  if (!h) return NULL;
  h->grad_fn = sf_node_retain(src->grad_fn);
  h->output_nr = src->output_nr;
  h->requires_grad = true;
  return h;
}

int sf_wan_kv_grad_write(sf_wan_kv *kv, int layer, int64_t slot0, int64_t nframes, int64_t src0, sf_tensor *k, sf_tensor *v) {
  if (kv->detach || !sf_grad_enabled()) return 0; /* no_grad writes leave the graph as it was */
  sf_tensor *hk = graph_handle(k), *hv = graph_handle(v);
  if ((k->requires_grad && !hk) || (v->requires_grad && !hv)) {
    sf_release(hk), sf_release(hv);
    return -1;
  }
  for (int64_t f = 0; f < nframes; f++) {
    sf_tensor **a = &kv->gk[layer][slot0 + f], **b = &kv->gv[layer][slot0 + f];
    sf_release(*a), sf_release(*b);
    *a = hk ? sf_retain(hk) : NULL;
    *b = hv ? sf_retain(hv) : NULL;
    kv->gframe[layer][slot0 + f] = src0 + f;
  }
  sf_release(hk), sf_release(hv);
  return 0;
}

void sf_wan_kv_grad_move(sf_wan_kv *kv, int layer, int64_t dst, int64_t src, int64_t nframes) {
  if (kv->detach || !sf_grad_enabled()) return;
  for (int64_t f = 0; f < nframes; f++) { /* dst < src: ascending order reads each source before it is overwritten */
    for (int t = 0; t < 2; t++) {
      sf_tensor **g = t ? kv->gv[layer] : kv->gk[layer];
      sf_tensor *h = g[src + f] ? sf_retain(g[src + f]) : NULL;
      sf_release(g[dst + f]);
      g[dst + f] = h;
    }
    kv->gframe[layer][dst + f] = kv->gframe[layer][src + f];
  }
}

/* backward bookkeeping: output frame j of the read came from frame src_frame[j] of input in[j] (-1 none) */
typedef struct {
  int64_t nframes, S;
  int *in;
  int64_t *src_frame;
} read_ctx;

static void read_ctx_free(void *p) {
  read_ctx *c = p;
  if (!c) return;
  free(c->in), free(c->src_frame), free(c);
}

static int read_backward(sf_node *n, sf_tensor **go, sf_tensor **gi) {
  const read_ctx *c = n->ctx;
  sf_tensor *g = go[0];
  for (int i = 0; i < n->n_in; i++) {
    if (!sf_node_needs(n, i)) continue;
    const sf_tensor_meta *m = &n->in[i];
    const int64_t src_frames = m->shape[1] / c->S;
    /* the common case: the input's frames are one run of output frames in order -> a narrow of the gradient */
    int64_t first = -1, count = 0;
    bool run = true;
    for (int64_t j = 0; j < c->nframes; j++) {
      if (c->in[j] != i) continue;
      if (first < 0) first = j;
      run = run && j == first + count && c->src_frame[j] == count;
      count++;
    }
    if (run && count == src_frames) {
      sf_tensor *s = sf_narrow(g, 1, first * c->S, count * c->S);
      gi[i] = s ? sf_contiguous(s) : NULL;
      sf_release(s);
      if (!gi[i]) return -1;
      continue;
    }
    sf_tensor *z = sf_zeros(m->ndim, m->shape, g->dtype, m->device);
    if (!z) return -1;
    for (int64_t j = 0; j < c->nframes; j++) {
      if (c->in[j] != i) continue;
      sf_tensor *d = sf_narrow(z, 1, c->src_frame[j] * c->S, c->S), *s = d ? sf_narrow(g, 1, j * c->S, c->S) : NULL;
      int rc = s ? sf_binary_(SF_BIN_ADD, d, s) : -1; /* add: a source frame may own several slots */
      sf_release(d), sf_release(s);
      if (rc) { sf_release(z); return -1; }
    }
    gi[i] = z;
  }
  return 0;
}

sf_tensor *sf_wan_kv_grad_read(sf_wan_kv *kv, int layer, int which, int64_t lo, int64_t end) {
  sf_tensor *buf = which ? kv->v[layer] : kv->k[layer];
  sf_tensor **g = which ? kv->gv[layer] : kv->gk[layer];
  const int64_t S = kv->S, f0 = lo / S, nf = (end - lo) / S;
  sf_tensor *view = sf_narrow(buf, 1, lo, end - lo);
  if (!view) return NULL;
  bool prev = sf_set_grad_enabled(false);
  sf_tensor *out = sf_clone(view); /* the values attention saves: later writes must not reach them */
  sf_set_grad_enabled(prev);
  sf_release(view);
  if (!out || kv->detach || !sf_grad_enabled()) return out;
  /* the distinct sources of the visible slots, in slot order */
  sf_tensor **ins = malloc(sizeof *ins * (size_t)(nf ? nf : 1));
  read_ctx *c = calloc(1, sizeof *c);
  int n_in = 0;
  if (c) c->in = malloc(sizeof(int) * (size_t)(nf ? nf : 1)), c->src_frame = malloc(sizeof(int64_t) * (size_t)(nf ? nf : 1));
  if (!ins || !c || !c->in || !c->src_frame) {
    free(ins), read_ctx_free(c), sf_release(out);
    return sf_error("wan kv cache: out of memory"), NULL;
  }
  c->nframes = nf, c->S = S;
  for (int64_t j = 0; j < nf; j++) {
    sf_tensor *h = g[f0 + j];
    c->in[j] = -1, c->src_frame[j] = -1;
    if (!h) continue;
    int k = 0;
    while (k < n_in && ins[k] != h) k++;
    if (k == n_in) ins[n_in++] = h;
    c->in[j] = k, c->src_frame[j] = kv->gframe[layer][f0 + j];
  }
  sf_node *n = n_in ? sf_node_begin("kv_cache_read", read_backward, ins, n_in) : NULL;
  free(ins);
  if (!n) {
    read_ctx_free(c);
    return out;
  }
  n->ctx = c, n->free_ctx = read_ctx_free;
  return sf_node_finish1(n, out);
}

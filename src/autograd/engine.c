/* engine.c — backward: one topological walk over the graph below a root, summing gradients per node
 * output, calling each node's backward once all its consumers have delivered, accumulating into leaves. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ag_internal.h"
#include "core/error.h"

/* SFWB_AUTOGRAD_PROFILE=1: time spent in each op's backward, printed to stderr after each backward */
#include <time.h>
typedef struct { const char *name; double s; int n; } prof_ent;
static prof_ent prof[64];
static int nprof, prof_on = -1;
static double now_s(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + 1e-9 * ts.tv_nsec; }
static void prof_add(const char *name, double s) {
  for (int i = 0; i < nprof; i++)
    if (prof[i].name == name) { prof[i].s += s; prof[i].n++; return; }
  if (nprof < 64) prof[nprof++] = (prof_ent){name, s, 1};
}
static void prof_dump(void) {
  for (int i = 0; i < nprof; i++) fprintf(stderr, "backward %-14s %4d calls %9.3f s\n", prof[i].name, prof[i].n, prof[i].s);
  nprof = 0;
}

static _Atomic uint64_t next_epoch = 1;

/* ---- a max-heap on node creation order: later nodes first keeps activations short-lived ---- */
typedef struct { sf_node **a; int n, cap; } heap;

static int heap_push(heap *h, sf_node *x) {
  if (h->n == h->cap) {
    int cap = h->cap ? h->cap * 2 : 64;
    sf_node **na = realloc(h->a, sizeof *na * cap);
    if (!na) return sf_error("out of host memory in backward");
    h->a = na;
    h->cap = cap;
  }
  int i = h->n++;
  h->a[i] = x;
  while (i > 0) {
    int p = (i - 1) / 2;
    if (h->a[p]->seq >= h->a[i]->seq) break;
    sf_node *t = h->a[p]; h->a[p] = h->a[i]; h->a[i] = t;
    i = p;
  }
  return 0;
}

static sf_node *heap_pop(heap *h) {
  sf_node *top = h->a[0];
  h->a[0] = h->a[--h->n];
  int i = 0;
  for (;;) {
    int l = 2 * i + 1, r = l + 1, m = i;
    if (l < h->n && h->a[l]->seq > h->a[m]->seq) m = l;
    if (r < h->n && h->a[r]->seq > h->a[m]->seq) m = r;
    if (m == i) break;
    sf_node *t = h->a[m]; h->a[m] = h->a[i]; h->a[i] = t;
    i = m;
  }
  return top;
}

static sf_dtype leaf_grad_dtype(sf_dtype dt) { return dt == SF_BF16 || dt == SF_F16 ? SF_F32 : dt; }

/* steals g */
static int accumulate_leaf(sf_tensor *leaf, sf_tensor *g) {
  sf_dtype gd = leaf_grad_dtype(leaf->dtype);
  if (!leaf->grad) {
    sf_tensor *c;
    if (g->refcount == 1 && g->storage->refcount == 1 && g->dtype == gd && sf_is_contiguous(g) && !g->grad_fn &&
        sf_numel(g) * (int64_t)sf_dtype_size(gd) == (int64_t)g->storage->nbytes)
      c = sf_retain(g); /* sole owner of the whole buffer: keep it instead of copying */
    else if (g->dtype != gd) c = sf_raw_cast(g, gd);
    else c = sf_raw_clone(g);
    sf_release(g);
    if (!c) return -1;
    if (!sf_is_contiguous(c)) {
      sf_tensor *cc = sf_raw_contiguous(c);
      sf_release(c);
      if (!cc) return -1;
      c = cc;
    }
    c->requires_grad = false;
    leaf->grad = c;
    return 0;
  }
  int rc = sf_raw_binary_(SF_BIN_ADD, leaf->grad, g);
  sf_release(g);
  return rc;
}

/* steals g */
static int accumulate_buf(sf_node *n, int k, sf_tensor *g) {
  if (!n->buf) {
    n->buf = calloc(n->n_out > 0 ? n->n_out : 1, sizeof *n->buf);
    if (!n->buf) { sf_release(g); return sf_error("out of host memory in backward"); }
  }
  if (k < 0 || k >= n->n_out) { sf_release(g); return sf_error("autograd: output %d of '%s' out of range", k, n->name); }
  if (!n->buf[k]) { n->buf[k] = g; return 0; }
  sf_tensor *s = sf_raw_add(n->buf[k], g);
  sf_release(g);
  if (!s) return -1;
  sf_release(n->buf[k]);
  n->buf[k] = s;
  return 0;
}

static void clear_buf(sf_node *n) {
  if (!n->buf) return;
  for (int k = 0; k < n->n_out; k++) sf_release(n->buf[k]);
  free(n->buf);
  n->buf = NULL;
}

static void free_saved(sf_node *n) {
  for (int s = 0; s < SF_NODE_MAX_SAVED; s++) {
    sf_release(n->saved[s]);
    n->saved[s] = NULL;
  }
}

static bool sole_dense(const sf_tensor *t, const sf_tensor_meta *m, sf_dtype dt) {
  if (!t || t->grad_fn || t->dtype != dt || (dt != SF_F32 && dt != SF_F64) || t->ndim != m->ndim) return false;
  for (int d = 0; d < m->ndim; d++)
    if (t->shape[d] != m->shape[d]) return false;
  return t->refcount == 1 && t->storage->refcount == 1 && sf_is_contiguous(t) &&
         sf_numel(t) * (int64_t)sf_dtype_size(dt) <= (int64_t)t->storage->nbytes;
}

sf_tensor *sf_node_grad_acc(sf_node *n, int i) {
  if (i < 0 || i >= n->n_in) return NULL;
  const sf_edge *e = &n->next[i];
  const sf_tensor_meta *m = &n->in[i];
  if (e->leaf) {
    /* .grad may be shared with Lua (t.grad): accumulation into it is in place anyway, as torch does */
    sf_tensor *g = e->leaf->grad;
    if (!g || g->grad_fn || e->leaf->dtype != m->dtype || g->dtype != leaf_grad_dtype(m->dtype) || !sf_is_contiguous(g) ||
        !sf_same_shape(g, e->leaf) || (g->dtype != SF_F32 && g->dtype != SF_F64))
      return NULL;
    return g;
  }
  if (!e->node || !e->node->buf || e->nr < 0 || e->nr >= e->node->n_out) return NULL;
  sf_tensor *g = e->node->buf[e->nr];
  return sole_dense(g, m, m->dtype) && g->dtype == e->node->out[e->nr].dtype ? g : NULL;
}

/* make a backward's gradient fit its input: dtype (floats) and shape must match what was recorded */
static sf_tensor *conform(sf_node *n, int i, sf_tensor *g) {
  const sf_tensor_meta *m = &n->in[i];
  bool same = g->ndim == m->ndim;
  for (int d = 0; same && d < m->ndim; d++) same = g->shape[d] == m->shape[d];
  if (!same) {
    char a[96], b[96] = "[";
    size_t k = 1;
    for (int d = 0; d < m->ndim; d++) k += snprintf(b + k, sizeof b - k, d ? ", %lld" : "%lld", (long long)m->shape[d]);
    snprintf(b + k, sizeof b - k, "]");
    sf_error("autograd: backward of '%s' gave a gradient of shape %s for input %d of shape %s", n->name,
             sf_shape_str(g, a, sizeof a), i + 1, b);
    sf_release(g);
    return NULL;
  }
  if (g->dtype != m->dtype && sf_dtype_is_float(m->dtype) && !(n->next[i].leaf)) {
    sf_tensor *c = sf_raw_cast(g, m->dtype);
    sf_release(g);
    return c;
  }
  return g;
}

int sf_backward(sf_tensor *root, sf_tensor *grad, bool retain_graph) {
  char sa[96], sb[96];
  sf_ag_sync_view(root);
  if (!root->requires_grad)
    return sf_error("backward: the tensor does not require grad and has no grad_fn (no input of the ops that made "
                    "it requires grad, or it was made under no_grad)");
  if (sf__ckpt_refill) return sf_error("backward inside a checkpoint recomputation is not supported");
  sf_tensor *g;
  if (!grad) {
    if (sf_numel(root) != 1)
      return sf_error("backward: grad can be implicitly created only for a one-element output (this one has shape "
                      "%s); pass the upstream gradient", sf_shape_str(root, sa, sizeof sa));
    g = sf_full(root->ndim, root->shape, 1.0, root->dtype, sf_device_of(root));
  } else {
    if (!sf_same_shape(root, grad))
      return sf_error("backward: gradient of shape %s given for a tensor of shape %s", sf_shape_str(grad, sa, sizeof sa),
                      sf_shape_str(root, sb, sizeof sb));
    if (!sf_device_eq(sf_device_of(root), sf_device_of(grad)))
      return sf_error("backward: gradient is on %s but the tensor is on %s",
                      sf_device_str(sf_device_of(grad), sa, sizeof sa), sf_device_str(sf_device_of(root), sb, sizeof sb));
    g = grad->dtype == root->dtype ? sf_retain(grad) : sf_raw_cast(grad, root->dtype);
  }
  if (!g) return -1;
  bool prev_mode = sf_set_grad_enabled(false);
  if (!root->grad_fn) {
    int rc = accumulate_leaf(root, g);
    sf_set_grad_enabled(prev_mode);
    return rc;
  }

  /* collect the graph below root and count, per node, the edges that will deliver a gradient */
  uint64_t epoch = atomic_fetch_add(&next_epoch, 1);
  sf_node **all = NULL;
  int n_all = 0, cap_all = 0, rc = 0;
  heap h = {0};
  sf_node *start = root->grad_fn;
  start->visit = epoch;
  start->deps = 0;
#define ADD_ALL(x)                                                               \
  do {                                                                           \
    if (n_all == cap_all) {                                                      \
      int c2 = cap_all ? cap_all * 2 : 64;                                       \
      sf_node **na = realloc(all, sizeof *na * c2);                              \
      if (!na) { rc = sf_error("out of host memory in backward"); goto done; }   \
      all = na;                                                                  \
      cap_all = c2;                                                              \
    }                                                                            \
    all[n_all++] = (x);                                                          \
  } while (0)
  ADD_ALL(start);
  for (int i = 0; i < n_all; i++) {
    sf_node *x = all[i];
    for (int e = 0; e < x->n_in; e++) {
      sf_node *c = x->next[e].node;
      if (!c) continue;
      if (c->visit != epoch) {
        c->visit = epoch;
        c->deps = 0;
        ADD_ALL(c);
      }
      c->deps++;
    }
  }

  rc = accumulate_buf(start, root->output_nr, g);
  g = NULL;
  if (rc) goto done;
  if ((rc = heap_push(&h, start))) goto done;

  while (h.n) {
    sf_node *n = heap_pop(&h);
    if (sf_interrupted()) { rc = sf_error("backward interrupted"); goto done; }
    if (n->released) {
      rc = sf_error("backward through '%s' a second time: its saved tensors were freed by the first backward "
                    "(pass retain_graph=true to the first backward to keep them)", n->name);
      goto done;
    }
    if (n->dropped && n->region) {
      if ((rc = sf__region_recompute(n->region))) goto done;
      if (n->dropped) { rc = sf_error("checkpoint: '%s' did not get its saved tensors back from the recomputation", n->name); goto done; }
    }
    if (!n->backward) { rc = sf_error("'%s' is not differentiable (no backward is implemented)", n->name); goto done; }
    for (int s = 0; s < SF_NODE_MAX_SAVED; s++) { /* PyTorch's version check */
      const sf_tensor *sv = n->saved[s];
      if (sv && sv->storage->version != n->saved_version[s]) {
        char sh[96];
        rc = sf_error("one of the tensors needed for the backward of '%s' (shape %s) has been modified by an inplace "
                      "operation ('%s'): it is at version %u, saved at version %u (as PyTorch's \"modified by an "
                      "inplace operation\"); clone it before the in-place write, or write out of place",
                      n->name, sf_shape_str(sv, sh, sizeof sh), sv->storage->last_inplace ? sv->storage->last_inplace : "?",
                      (unsigned)sv->storage->version, (unsigned)n->saved_version[s]);
        goto done;
      }
    }
    sf_tensor *gi_local[8];
    sf_tensor **gi = n->n_in <= 8 ? gi_local : calloc(n->n_in, sizeof *gi);
    if (!gi) { rc = sf_error("out of host memory in backward"); goto done; }
    memset(gi, 0, sizeof *gi * (n->n_in <= 8 ? 8 : n->n_in));
    if (!n->buf) { /* every consumer gave a zero gradient: nothing flows further, but dependents still count down */
      n->buf = calloc(n->n_out > 0 ? n->n_out : 1, sizeof *n->buf);
    }
    bool any = false;
    for (int k = 0; k < n->n_out; k++) any = any || (n->buf && n->buf[k]);
    if (any) {
      for (int k = 0; k < n->n_out; k++) /* gradients arrive in their tensor's dtype */
        if (n->buf[k] && n->buf[k]->dtype != n->out[k].dtype && sf_dtype_is_float(n->out[k].dtype)) {
          sf_tensor *c = sf_raw_cast(n->buf[k], n->out[k].dtype);
          if (!c) { rc = -1; break; }
          sf_release(n->buf[k]);
          n->buf[k] = c;
        }
      if (prof_on < 0) prof_on = getenv("SFWB_AUTOGRAD_PROFILE") != NULL;
      double t0 = prof_on ? now_s() : 0;
      if (!rc && n->backward(n, n->buf, gi)) {
        sf_error_prefix("backward of '%s': ", n->name);
        rc = -1;
      }
      if (prof_on) prof_add(n->name, now_s() - t0);
    }
    clear_buf(n);
    if (!retain_graph) {
      free_saved(n);
      n->released = true;
    } else if (n->region) { /* keep checkpointed regions cheap: recompute again next time */
      free_saved(n);
      n->dropped = n->saved_mask != 0;
    }
    for (int i = 0; i < n->n_in; i++) {
      sf_tensor *gx = gi[i];
      gi[i] = NULL;
      sf_edge *e = &n->next[i];
      if (!e->node && !e->leaf) { sf_release(gx); continue; }
      if (gx && !rc) {
        gx = conform(n, i, gx);
        if (!gx) rc = -1;
        else if (e->leaf) rc = accumulate_leaf(e->leaf, gx);
        else rc = accumulate_buf(e->node, e->nr, gx);
      } else {
        sf_release(gx);
      }
      if (e->node && !rc && --e->node->deps == 0) rc = heap_push(&h, e->node);
    }
    if (gi != gi_local) free(gi);
    if (rc) goto done;
  }

done:
#undef ADD_ALL
  if (prof_on > 0) prof_dump();
  sf_release(g);
  for (int i = 0; i < n_all; i++) clear_buf(all[i]);
  free(all);
  free(h.a);
  sf_set_grad_enabled(prev_mode);
  return rc;
}

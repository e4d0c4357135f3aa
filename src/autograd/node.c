/* node.c — grad mode, leaves, detach, and the life of graph nodes (record, save, attach, free). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ag_internal.h"
#include "core/error.h"

static _Thread_local bool grad_disabled; /* zero-initialized: grad mode starts on */
_Thread_local sf_ckpt_region *sf__ckpt_forward;
_Thread_local sf_ckpt_region *sf__ckpt_refill;
static _Atomic uint64_t next_seq = 1;

bool sf_grad_enabled(void) { return !grad_disabled; }

bool sf_set_grad_enabled(bool on) {
  bool prev = !grad_disabled;
  grad_disabled = !on;
  return prev;
}

void sf_meta_of(const sf_tensor *t, sf_tensor_meta *m) {
  m->ndim = t->ndim;
  memcpy(m->shape, t->shape, sizeof(int64_t) * t->ndim);
  memcpy(m->stride, t->stride, sizeof(int64_t) * t->ndim);
  m->offset = t->offset;
  m->dtype = t->dtype;
  m->device = sf_device_of(t);
}

sf_tensor *sf__detached_alias(sf_tensor *t) {
  return sf_tensor_from_storage(t->storage, t->dtype, t->ndim, t->shape, t->stride, t->offset);
}

sf_tensor *sf_detach(sf_tensor *t) { return sf__detached_alias(t); }

void sf_autograd_init(void) {
  static const sf_tensor_hooks hooks = {sf_autograd_tensor_freed, sf_autograd_record_view};
  static _Atomic int done;
  if (!atomic_exchange(&done, 1)) sf_tensor_set_hooks(&hooks);
}

int sf_requires_grad_(sf_tensor *t, bool on) {
  sf_autograd_init();
  if (on && !sf_dtype_is_float(t->dtype) && t->dtype != SF_F64)
    return sf_error("only floating-point tensors can require gradients (this one is %s)", sf_dtype_name(t->dtype));
  if (!on && t->grad_fn)
    return sf_error("requires_grad_(false) on a non-leaf tensor (made by '%s'); use detach() instead", t->grad_fn->name);
  t->requires_grad = on;
  return 0;
}

sf_tensor *sf_grad_of(sf_tensor *t) { return t->grad ? sf_retain(t->grad) : NULL; }

int sf_set_grad(sf_tensor *t, sf_tensor *g) {
  sf_autograd_init();
  if (g) {
    char a[96], b[96];
    if (!sf_same_shape(t, g))
      return sf_error("assigned grad has shape %s but the tensor has shape %s", sf_shape_str(g, a, sizeof a),
                      sf_shape_str(t, b, sizeof b));
    if (!sf_device_eq(sf_device_of(t), sf_device_of(g)))
      return sf_error("assigned grad is on %s but the tensor is on %s", sf_device_str(sf_device_of(g), a, sizeof a),
                      sf_device_str(sf_device_of(t), b, sizeof b));
    sf_retain(g);
  }
  sf_release(t->grad);
  t->grad = g;
  return 0;
}

bool sf_ag_should_record(sf_tensor *const *inputs, int n) {
  if (grad_disabled) return false;
  bool any = false;
  for (int i = 0; i < n; i++) {
    sf_tensor *x = inputs[i];
    if (!x) continue;
    if (x->base && x->hist != x->base->hist) sf_ag_sync_view(x); /* a view written in place through its base */
    any = any || x->requires_grad;
  }
  return any;
}

/* ---- node lifetime ---- */

sf_node *sf_node_retain(sf_node *n) {
  if (n) atomic_fetch_add_explicit((_Atomic int *)&n->refcount, 1, memory_order_relaxed);
  return n;
}

static void node_free_fields(sf_node *n) {
  for (int i = 0; i < SF_NODE_MAX_SAVED; i++) sf_release(n->saved[i]);
  if (n->free_ctx) n->free_ctx(n->ctx);
  free(n->buf);
  free(n->out);
  if (n->region) {
    if (n->region_idx < n->region->n_nodes && n->region->nodes[n->region_idx] == n) n->region->nodes[n->region_idx] = NULL;
    sf__region_release(n->region);
  }
}

/* iterative: a long chain of nodes must not recurse once per node */
void sf_node_release(sf_node *n) {
  if (!n) return;
  sf_node *local[64];
  sf_node **stack = local;
  int top = 0, cap = 64;
  stack[top++] = n;
  while (top) {
    sf_node *x = stack[--top];
    if (atomic_fetch_sub_explicit((_Atomic int *)&x->refcount, 1, memory_order_acq_rel) != 1) continue;
    for (int i = 0; i < x->n_in; i++) {
      sf_release(x->next[i].leaf);
      if (!x->next[i].node) continue;
      if (top == cap) {
        sf_node **bigger = malloc(sizeof *bigger * cap * 2);
        if (!bigger) { sf_node_release(x->next[i].node); continue; } /* out of memory: fall back to recursion */
        memcpy(bigger, stack, sizeof *bigger * top);
        if (stack != local) free(stack);
        stack = bigger;
        cap *= 2;
      }
      stack[top++] = x->next[i].node;
    }
    node_free_fields(x);
    free(x);
  }
  if (stack != local) free(stack);
}

void sf_autograd_tensor_freed(sf_tensor *t) {
  sf_release(t->grad);
  t->grad = NULL;
  sf_node_release(t->grad_fn);
  t->grad_fn = NULL;
}

/* ---- recording ---- */

static sf_node *node_alloc(const char *name, sf_backward_fn bw, int n_in) {
  size_t sz = sizeof(sf_node) + (sizeof(sf_edge) + sizeof(sf_tensor_meta)) * (size_t)n_in;
  sf_node *n = calloc(1, sz);
  if (!n) { sf_error("out of host memory recording '%s' for autograd", name); return NULL; }
  n->refcount = 1;
  n->name = name;
  n->backward = bw;
  n->n_in = n_in;
  n->next = (sf_edge *)(n + 1);
  n->in = (sf_tensor_meta *)(n->next + n_in);
  n->seq = atomic_fetch_add_explicit(&next_seq, 1, memory_order_relaxed);
  return n;
}

static bool is_region_node(const sf_node *n) { return n->region && n->region == sf__ckpt_refill; }

sf_node *sf_node_begin(const char *name, sf_backward_fn bw, sf_tensor *const *inputs, int n_in) {
  sf_autograd_init();
  if (!sf_ag_should_record(inputs, n_in)) return NULL;
  sf_ckpt_region *rr = sf__ckpt_refill;
  if (rr) {
    /* recomputation: hand back the node recorded at this position, to be refilled */
    int k = rr->refill_pos++;
    sf_node *orig = k < rr->n_nodes ? rr->nodes[k] : NULL;
    if (k >= rr->n_nodes || (orig && orig->backward != bw)) rr->refill_mismatch = true;
    if (orig && !rr->refill_mismatch) return orig;
    /* the original node is gone (its output was never used): a scratch node keeps the op sequence */
    sf_node *s = node_alloc(name, bw, n_in);
    return s;
  }
  sf_node *n = node_alloc(name, bw, n_in);
  if (!n) return NULL;
  for (int i = 0; i < n_in; i++) {
    sf_tensor *x = inputs[i];
    if (!x) continue;
    sf_meta_of(x, &n->in[i]);
    if (x->grad_fn) {
      n->next[i].node = sf_node_retain(x->grad_fn);
      n->next[i].nr = x->output_nr;
    } else if (x->requires_grad) {
      n->next[i].leaf = sf_retain(x);
    }
  }
  sf_ckpt_region *fr = sf__ckpt_forward;
  if (fr) {
    if (fr->n_nodes == fr->cap) {
      int cap = fr->cap ? fr->cap * 2 : 64;
      sf_node **nn = realloc(fr->nodes, sizeof *nn * cap);
      if (!nn) { sf_error("out of host memory in a checkpoint region"); sf_node_release(n); return NULL; }
      fr->nodes = nn;
      fr->cap = cap;
    }
    fr->nodes[fr->n_nodes] = n;
    n->region_idx = fr->n_nodes++;
    n->region = fr;
    fr->refcount++;
  }
  return n;
}

void sf_node_save(sf_node *n, int slot, sf_tensor *t) {
  if (!n || !t || slot < 0 || slot >= SF_NODE_MAX_SAVED) return;
  if (slot >= n->n_saved) n->n_saved = slot + 1;
  n->saved_mask |= 1u << slot;
  if (sf__ckpt_refill) {
    if (!is_region_node(n) || n->released || !n->dropped) return; /* scratch, or nothing to refill */
  } else if (n->region) {
    n->dropped = true; /* checkpointed: recompute in backward instead of keeping it */
    return;
  }
  sf_tensor *a = sf__detached_alias(t);
  sf_release(n->saved[slot]);
  n->saved[slot] = a; /* NULL on OOM: the backward reports the missing saved tensor */
  n->saved_version[slot] = t->storage->version;
}

void sf_node_abort(sf_node *n) {
  if (!n) return;
  if (sf__ckpt_refill && is_region_node(n)) return; /* the region owns it */
  sf_node_release(n);
}

int sf_node_finish(sf_node *n, sf_tensor *const *outs, int n_out) {
  if (!n) return 0;
  if (sf__ckpt_refill) {
    /* outputs of a recomputation stay outside the graph but must look like they need grad, so the
     * following ops of the region record (and refill) too */
    for (int k = 0; k < n_out; k++)
      if (outs[k]) outs[k]->requires_grad = true;
    if (is_region_node(n)) {
      if (n->dropped) {
        bool full = true;
        for (int s = 0; s < n->n_saved; s++) full = full && (!(n->saved_mask >> s & 1) || n->saved[s]);
        n->dropped = !full;
      }
    } else {
      sf_node_release(n);
    }
    return 0;
  }
  n->out = calloc(n_out > 0 ? n_out : 1, sizeof *n->out);
  if (!n->out) { sf_node_release(n); return sf_error("out of host memory recording '%s'", n->name); }
  n->n_out = n_out;
  for (int k = 0; k < n_out; k++) {
    sf_tensor *o = outs[k];
    if (!o) continue;
    sf_meta_of(o, &n->out[k]);
    sf_node_release(o->grad_fn);
    o->grad_fn = k == 0 ? n : sf_node_retain(n);
    o->output_nr = k;
    o->requires_grad = true;
  }
  if (n_out == 0 || !outs[0]) sf_node_release(n);
  return 0;
}

sf_tensor *sf_node_finish1(sf_node *n, sf_tensor *out) {
  if (!n) return out;
  if (!out) { sf_node_abort(n); return NULL; }
  if (sf_node_finish(n, &out, 1)) { sf_release(out); return NULL; }
  return out;
}

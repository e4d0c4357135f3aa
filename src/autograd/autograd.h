/* autograd.h — reverse-mode autograd: grad mode, the tape of nodes, backward, detach, checkpoint regions.
 *
 * Model: every differentiable op, when grad mode is on and one of its inputs requires grad, builds a
 * node (its backward function, the saved tensors it needs, the geometry of its inputs) and sets it as
 * grad_fn of its outputs. Outputs own their node; a node owns the nodes (or leaf tensors) its inputs
 * came from, so the graph lives exactly as long as something can still backward through it.
 * Saved tensors are detached aliases (they never own the graph), so a node saving its own output makes
 * no reference cycle. Backward walks the graph once in topological order (a node runs when every
 * consumer has delivered its gradient), sums gradients, and frees saved tensors unless retain_graph.
 *
 * Grad dtypes follow torch (a gradient has its tensor's dtype), except that leaves stored in bf16/f16
 * accumulate their .grad in f32 (the trainer's AdamW keeps f32 master weights for them anyway). */
#ifndef SF_AUTOGRAD_H
#define SF_AUTOGRAD_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/autograd_hooks.h"
#include "core/dispatch.h"
#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- grad mode (thread-local, on by default) ---- */
bool sf_grad_enabled(void);
bool sf_set_grad_enabled(bool on); /* returns the previous mode */

/* ---- leaves ---- */
/* t:requires_grad_(on): only float leaves; turning it off on a non-leaf is an error (as torch) */
int sf_requires_grad_(sf_tensor *t, bool on);
static inline bool sf_is_leaf(const sf_tensor *t) { return t->grad_fn == NULL; }
/* a new tensor object over the same storage, outside any graph (requires_grad false) */
sf_tensor *sf_detach(sf_tensor *t);
/* t->grad as a new reference, NULL (no error) when none */
sf_tensor *sf_grad_of(sf_tensor *t);
/* set (g may be NULL to clear) t->grad; g must match t's shape and device */
int sf_set_grad(sf_tensor *t, sf_tensor *g);

/* ---- backward ---- */
/* Backpropagate from `root`. grad == NULL means 1 and needs a one-element root. Leaves' .grad
 * accumulate. Without retain_graph the walked nodes free their saved tensors; a second backward
 * through them fails with an error naming the op. Runs with grad mode off. */
int sf_backward(sf_tensor *root, sf_tensor *grad, bool retain_graph);

/* ---- nodes ---- */
typedef struct sf_tensor_meta {
  int ndim;
  int64_t shape[SF_MAX_DIMS];
  int64_t stride[SF_MAX_DIMS];
  int64_t offset;
  sf_dtype dtype;
  sf_device device;
} sf_tensor_meta;

/* where the gradient for one input goes: another node's output `nr`, or a leaf's .grad; both NULL
 * when that input needs no gradient */
typedef struct sf_edge {
  struct sf_node *node;
  int nr;
  sf_tensor *leaf;
} sf_edge;

struct sf_node;
struct sf_ckpt_region;
/* grad_out[k] is the summed gradient of output k (NULL = zero, only for multi-output nodes);
 * write new references into grad_in[i] for each input with sf_node_needs(n, i); NULL there means a
 * zero gradient. Return 0, or -1 with sf_error set. Runs with grad mode off. */
typedef int (*sf_backward_fn)(struct sf_node *n, sf_tensor **grad_out, sf_tensor **grad_in);

#define SF_NODE_MAX_SAVED 6

typedef struct sf_node {
  int refcount;
  const char *name;       /* "mul", "layer_norm", ... (static string) */
  sf_backward_fn backward;
  uint64_t seq;           /* creation order: later nodes run first among ready ones */
  int n_in, n_out;
  sf_edge *next;          /* [n_in] */
  sf_tensor_meta *in;     /* [n_in] geometry/dtype/device of each input at record time */
  sf_tensor_meta *out;    /* [n_out] */
  int n_saved;
  unsigned saved_mask;    /* slots that sf_node_save was called for */
  sf_tensor *saved[SF_NODE_MAX_SAVED]; /* detached aliases; NULL after release or when dropped by a checkpoint */
  uint32_t saved_version[SF_NODE_MAX_SAVED]; /* their storage's version when saved */
  bool released;          /* saved tensors freed by a backward without retain_graph */
  bool dropped;           /* saved tensors not kept: recompute the checkpoint region first */
  /* op parameters, free for the backward function's use */
  double p[4];
  int64_t ip[SF_MAX_DIMS + 4];
  void *ctx;              /* op-owned extra state, freed with free_ctx */
  void (*free_ctx)(void *ctx);
  struct sf_ckpt_region *region; /* checkpoint region the node was recorded in (owned ref) */
  int region_idx;
  /* engine scratch (valid during one backward) */
  uint64_t visit;
  int deps;
  sf_tensor **buf;        /* [n_out] gradient accumulators */
} sf_node;

static inline bool sf_node_needs(const sf_node *n, int i) { return n->next[i].node || n->next[i].leaf; }

/* True when an op on these inputs must record (grad mode on and one of them requires grad). Ops call
 * the sf_ag_* recorders (below) unconditionally; this is what they check first. */
bool sf_ag_should_record(sf_tensor *const *inputs, int n);

/* Recording, for ops with their own backward: begin (NULL when nothing to record — not an error,
 * check sf_last_error only if you need to tell OOM apart; the recorders below handle it), save,
 * finish. finish sets n as grad_fn of outs (requires_grad = true) and drops the caller's reference.
 * In a checkpoint region's recomputation begin returns the region's existing node instead, save fills
 * it and finish attaches nothing. */
sf_node *sf_node_begin(const char *name, sf_backward_fn bw, sf_tensor *const *inputs, int n_in);
void sf_node_save(sf_node *n, int slot, sf_tensor *t); /* t borrowed; stored as a detached alias */
int sf_node_finish(sf_node *n, sf_tensor *const *outs, int n_out);
void sf_node_abort(sf_node *n); /* drop a begun node on an error path */
sf_node *sf_node_retain(sf_node *n);
void sf_node_release(sf_node *n);

/* finish + return-out convenience for single-output ops: returns out, or NULL (out released) on error */
sf_tensor *sf_node_finish1(sf_node *n, sf_tensor *out);

/* ---- recorders for the core ops (src/core/ops.c calls one per op: `return sf_ag_mul(out, a, b)`-style).
 * Each returns `out` (grad_fn attached when recording) or NULL after releasing out on failure;
 * out == NULL passes through. They are cheap no-ops when nothing requires grad. */
sf_tensor *sf_ag_unary(sf_tensor *out, sf_unary_op op, sf_tensor *a, double p0, double p1);
sf_tensor *sf_ag_binary(sf_tensor *out, sf_binary_op op, sf_tensor *a, sf_tensor *b);
sf_tensor *sf_ag_binary_scalar(sf_tensor *out, sf_binary_op op, sf_tensor *a, double s, bool scalar_first);
sf_tensor *sf_ag_where(sf_tensor *out, sf_tensor *cond, sf_tensor *a, sf_tensor *b);
sf_tensor *sf_ag_reduce(sf_tensor *out, sf_reduce_op op, sf_tensor *a, int dim, bool keepdim);
sf_tensor *sf_ag_softmax(sf_tensor *out, sf_tensor *a, int dim, bool log);
sf_tensor *sf_ag_matmul(sf_tensor *out, sf_tensor *a, sf_tensor *b);
sf_tensor *sf_ag_linear(sf_tensor *out, sf_tensor *x, sf_tensor *w, sf_tensor *b);
sf_tensor *sf_ag_cast(sf_tensor *out, sf_tensor *a);      /* also to_device */
sf_tensor *sf_ag_identity(sf_tensor *out, sf_tensor *a);  /* clone, contiguous copy */
sf_tensor *sf_ag_cat(sf_tensor *out, sf_tensor *const *ts, int n, int dim);
sf_tensor *sf_ag_stack(sf_tensor *out, sf_tensor *const *ts, int n, int dim);
/* the fused model ops (core/nn.c); lse is the attention's f32 [B, H, Lq] log-sum-exp (required) */
sf_tensor *sf_ag_layer_norm(sf_tensor *out, sf_tensor *x, sf_tensor *w, sf_tensor *b, double eps);
sf_tensor *sf_ag_rms_norm(sf_tensor *out, sf_tensor *x, sf_tensor *w, double eps);
sf_tensor *sf_ag_modulate(sf_tensor *out, sf_tensor *x, sf_tensor *shift, sf_tensor *scale);
sf_tensor *sf_ag_gated_add(sf_tensor *out, sf_tensor *x, sf_tensor *y, sf_tensor *gate);
sf_tensor *sf_ag_rope3d(sf_tensor *out, sf_tensor *x, int64_t F, int64_t Hp, int64_t Wp, int64_t f0);
struct sf_attn_desc;
sf_tensor *sf_ag_attention(sf_tensor *out, sf_tensor *q, sf_tensor *k, sf_tensor *v, const struct sf_attn_desc *desc,
                           sf_tensor *lse);
/* conv2d (nd 2) / conv3d (nd 3) as sf_conv2d/sf_conv3d compute them (backward: ag_conv.c, cpu only) */
sf_tensor *sf_ag_conv(sf_tensor *out, int nd, sf_tensor *x, sf_tensor *w, sf_tensor *b, const int *stride, const int *pad);
/* in-place writes (src/autograd/ag_inplace.c; PyTorch's CopySlices and rebase_history): an in-place op on dst
 * with source src (may be NULL) calls sf_ag_inplace_begin first: -1 (error) for a write PyTorch refuses (into
 * a leaf that requires grad or a view of one; a recorded write into an expanded tensor), else it bumps dst's
 * storage version (PyTorch's version counter: a tensor saved for backward and written afterwards fails its
 * backward) and returns 1 when the write must be recorded (grad mode on and dst, its base or src takes part
 * in a graph), 0 when not. After writing the values, a recorded write calls sf_ag_inplace_record with the
 * tensor holding the written values' history (for add_/mul_...: the out-of-place result on dst's old values):
 * dst's base gets the new history and every view of it follows. */
int sf_ag_inplace_begin(sf_tensor *dst, sf_tensor *src, const char *opname);
int sf_ag_inplace_record(sf_tensor *dst, sf_tensor *src);
/* a view whose base was written in place since its history was taken: take the base's new history (no-op
 * otherwise, and in no_grad mode). Everything that reads a tensor's grad_fn/requires_grad outside an op
 * (backward's root, the Lua getters) calls it; op recording does it for its inputs. */
void sf_ag_sync_view(sf_tensor *t);

/* ops.c runs an op's implementation with grad mode off, then restores it before recording:
 * `bool g = sf_set_grad_enabled(false); return sf_ag_x(sf_ag_resume(g, x_impl(...)), ...);` */
static inline sf_tensor *sf_ag_resume(bool prev, sf_tensor *out) { sf_set_grad_enabled(prev); return out; }

/* ---- checkpoint regions: record the graph but drop saved tensors; backward re-runs the region ----
 * recompute(ctx) must redo exactly the same ops on the same inputs (the RNG state is restored for it);
 * free_ctx(ctx) runs when no node of the region is left. Regions do not nest (an inner one joins the
 * outer). end returns 0 or -1. */
typedef struct sf_ckpt_region sf_ckpt_region;
sf_ckpt_region *sf_checkpoint_begin(int (*recompute)(void *ctx), void *ctx, void (*free_ctx)(void *ctx));
int sf_checkpoint_end(sf_ckpt_region *r);
bool sf_checkpoint_active(void);
/* true while a region is being recomputed for backward (attention capture must not count twice) */
bool sf_checkpoint_recomputing(void);

/* ---- helpers shared by backward functions ---- */
void sf_meta_of(const sf_tensor *t, sf_tensor_meta *m);
/* sum g over broadcast dims so it has m's shape (new reference; NULL passes through) */
sf_tensor *sf_ag_sum_to(sf_tensor *g, const sf_tensor_meta *m);
/* For a backward function that can add input i's gradient in place (a GEMM with beta = 1): the gradient
 * accumulated for that input so far — the leaf's .grad, or the buffer of the node the input came from — when
 * it is an f32/f64 contiguous tensor of the input's shape and dtype that nothing else shares; else NULL.
 * After adding into it, leave grad_in[i] NULL (the engine then adds nothing). Borrowed. */
sf_tensor *sf_node_grad_acc(sf_node *n, int i);
/* zeros with m's shape/dtype/device */
sf_tensor *sf_ag_zeros_like_meta(const sf_tensor_meta *m);

#ifdef __cplusplus
}
#endif
#endif

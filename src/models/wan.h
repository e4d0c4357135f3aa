/* wan.h — the Wan2.1 DiT (bidirectional WanModel and Self-Forcing's CausalWanModel, T2V and I2V):
 * config, parameters keyed by the original state-dict names, loading, forward, KV and
 * cross-attention caches, and attention capture. Facts: /work/shared/spec/wan_model_spec.md. */
#ifndef SF_WAN_H
#define SF_WAN_H

#include <stdbool.h>
#include <stdint.h>

#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sf_wan_config {
  char model_type[8];          /* "t2v" | "i2v" */
  int64_t dim, ffn_dim, freq_dim, in_dim, out_dim, num_heads, num_layers, text_dim, text_len;
  double eps;
  int64_t clip_dim;            /* i2v: width of the CLIP features (img_emb input), 1280 for the real models */
  /* CausalWanModel (runtime settings, not in config.json) */
  bool causal;
  int64_t local_attn_size;     /* frames, -1 = global */
  int64_t sink_size;           /* frames */
  int64_t num_frame_per_block;
  bool independent_first_frame;
} sf_wan_config;

/* fills defaults for everything config.json omits (spec 2.2) */
void sf_wan_config_defaults(sf_wan_config *c);
/* parse config.json text over defaults; unknown keys are ignored, wrong types are errors */
int sf_wan_config_parse(sf_wan_config *c, const char *json_text, const char *origin);
int sf_wan_config_check(const sf_wan_config *c);

typedef struct sf_wan_capture sf_wan_capture;

typedef struct sf_wan_model {
  int refcount;
  sf_wan_config cfg;
  int nparams;
  char **names;                /* original state-dict names */
  sf_tensor **params;          /* same order */
  int *hash;                   /* open addressing over names */
  int hash_size;
  sf_dtype dtype;              /* storage dtype of the weights (f32 or bf16) */
  sf_dtype autocast;           /* SF_F32: compute in the weights' dtype (f32, or Self-Forcing's bf16 regime);
                                * SF_BF16/SF_F16: upstream Wan's autocast with its fp32 islands (spec 1.10) */
  sf_device device;
  sf_wan_capture *captures;    /* attached captures (linked) */
  char provenance[512];        /* where the weights came from (for capture metadata) */
  /* LoRA adapters kept separate (PEFT semantics): parameters "<linear>.lora_A.weight" [r, in] and
   * "<linear>.lora_B.weight" [out, r] beside the base weights; every linear that has them adds
   * lora_scale * B(A(x)). lora_rank 0 = none attached. */
  int lora_rank;
  double lora_scale, lora_dropout;
  /* Per-block parameter hook (FSDP: lua/sfwb/dist/fsdp.lua gathers a block's sharded parameters before
   * it runs and frees them after). NULL = none. Called with the block index and a phase (below) before
   * and after each block's forward (recompute = true for a gradient-checkpointing recomputation in
   * backward), and, when the forward recorded a graph, as the block's backward starts (the gradient
   * reached its output) and ends (every node of the block ran: its parameters' gradients are complete);
   * there recompute = true says the block is checkpointed (its forward runs again in between). Block -1
   * stands for the rest of the model (embeddings, head): its pre/post_forward wrap the whole call.
   * Return 0, or -1 with sf_error set (the forward/backward then fails with that error). Not copied by
   * sf_wan_clone; block_hook_free(ud) runs when the model is freed. */
  int (*block_hook)(void *ud, int block, int phase, bool recompute);
  void *block_hook_ud;
  void (*block_hook_free)(void *ud);
} sf_wan_model;

enum { SF_WAN_PRE_FORWARD = 0, SF_WAN_POST_FORWARD = 1, SF_WAN_PRE_BACKWARD = 2, SF_WAN_POST_BACKWARD = 3 };

/* A model with the config's full parameter set: random init (seeded from the global RNG) or empty
 * (uninitialised) tensors when `init` is false. dtype f32|bf16. */
sf_wan_model *sf_wan_new(const sf_wan_config *c, sf_dtype dt, sf_device dev, bool init);
void sf_wan_free(sf_wan_model *m);   /* drop one reference */
sf_wan_model *sf_wan_retain(sf_wan_model *m);

/* dir holds config.json + diffusion_pytorch_model*.safetensors (a single file or a sharded index).
 * `over` supplies the runtime fields (causal, local_attn_size, ...) copied over the parsed config. */
sf_wan_model *sf_wan_load(const char *dir, const sf_wan_config *over, sf_dtype dt, sf_device dev);

sf_tensor *sf_wan_param(const sf_wan_model *m, const char *name);   /* borrowed; NULL when absent */
int sf_wan_param_index(const sf_wan_model *m, const char *name);     /* -1 when absent */

/* strip known wrapper prefixes/fragments in place: _fsdp_wrapped_module., _checkpoint_wrapped_module.,
 * _orig_mod. anywhere, then one leading "model." */
void sf_wan_strip_name(char *name);
/* Copy tensors into the parameters (cast to the model's dtype/device). names[i] are stripped first.
 * strict: one error listing missing, unexpected and mis-shaped keys; non-strict: mis-shaped is still
 * an error, missing/unexpected are ignored. Nothing changes when an error is returned. */
int sf_wan_load_tensors(sf_wan_model *m, int n, const char *const *names, sf_tensor *const *ts, bool strict);
/* Self-Forcing .pt: entries under "generator_ema." (ema) or "generator."; error if file/key missing. */
int sf_wan_load_checkpoint(sf_wan_model *m, const char *path, bool ema, int *n_loaded, char *key_used, size_t key_n);

sf_wan_model *sf_wan_clone(const sf_wan_model *m);                 /* shares nothing (adapters included) */
/* add a parameter, or replace one of the same name (takes the reference to t) */
int sf_wan_set_param(sf_wan_model *m, const char *name, sf_tensor *t);
/* remove every parameter whose name contains `part` (the LoRA adapters: ".lora_"); returns how many */
int sf_wan_drop_params(sf_wan_model *m, const char *part);
int sf_wan_to(sf_wan_model *m, sf_device dev, sf_dtype dt);         /* convert in place */

/* ---- caches ---- */
typedef struct sf_wan_kv {
  int refcount;
  int num_layers;
  int64_t batch, heads, head_dim;
  int64_t capacity_frames;     /* frames the buffer holds */
  int64_t local_attn_size, sink_size; /* frames; -1 = global */
  int64_t S;                   /* tokens per frame, fixed at the first write (0 = not yet) */
  sf_dtype dtype;
  sf_device device;
  sf_tensor **k, **v;          /* [B, capacity*S, H, d] per layer, allocated at the first write */
  int64_t *global_end, *local_end; /* tokens, per layer */
  int64_t **slot_frame;        /* per layer: absolute frame id of each frame slot (-1 empty) */
  int64_t max_attn_frames;     /* 0 = the policy's default (a state field its plan reads) */
  int64_t *ids;                /* scratch: key frame ids of a two-range read */
  /* The gradient path, as PyTorch's in-place cache writes route it: a write made with grad mode on
   * records the source's graph for its slots (CopySlices); writes under no_grad change the values
   * only. A later grad-mode read sends each slot's gradient to the last grad-mode write of that slot,
   * even when a no-grad pass has overwritten the values since (the context pass). Per layer, per frame
   * slot: a handle on that source's graph (NULL = none) and the frame inside the source. */
  bool detach;                 /* true: no gradient path through the cache (the clean variant) */
  sf_tensor ***gk, ***gv;
  int64_t **gframe;
} sf_wan_kv;

/* What one forward call does to the cache, the same in every layer (frames; sfwb/kv_policy.lua computes it
 * in Lua, the C default below is Self-Forcing's rule for C callers): move roll_n slots from roll_src down to
 * roll_dst, write rows [write_from, write_from + write_n) of this call's K/V into slots from write_at,
 * attend over the slot ranges read_lo[r]..read_hi[r] (in order), then set the end indices when advance. */
typedef struct sf_wan_kv_plan {
  int64_t roll_dst, roll_src, roll_n;
  int64_t write_at, write_from, write_n;
  int n_read;
  int64_t read_lo[2], read_hi[2];
  bool advance;
  int64_t global_end, local_end;
} sf_wan_kv_plan;

/* Self-Forcing's rule (spec 3.4) from layer `layer`'s indices, for a call of n frames from frame f0 */
int sf_wan_kv_default_plan(const sf_wan_kv *kv, int layer, int64_t f0, int64_t n, sf_wan_kv_plan *p);
/* the plan's ranges fit the cache and the call (an error naming the range otherwise) */
int sf_wan_kv_check_plan(const sf_wan_kv *kv, int64_t n, const sf_wan_kv_plan *p);

typedef struct sf_wan_xcache {
  int refcount;
  int num_layers;
  bool *is_init;
  sf_tensor **k, **v, **k_img, **v_img;  /* per layer */
} sf_wan_xcache;

sf_wan_kv *sf_wan_kv_new(const sf_wan_model *m, int64_t batch, int64_t frames, int64_t tokens_per_frame);
/* forget every slot's gradient source (sf_wan_kv_reset does too) */
void sf_wan_kv_clear_grad(sf_wan_kv *kv);
void sf_wan_kv_reset(sf_wan_kv *kv);
/* zero the K/V buffers, keep the pointers and slot ids (LongLive's reset before a recache) */
void sf_wan_kv_zero(sf_wan_kv *kv);
void sf_wan_kv_free(sf_wan_kv *kv);
sf_wan_xcache *sf_wan_xcache_new(const sf_wan_model *m);
void sf_wan_xcache_reset(sf_wan_xcache *c);
/* replace every initialised layer's K/V by zeros of the same shape (is_init kept); 0 or an error */
int sf_wan_xcache_zero(sf_wan_xcache *c);
void sf_wan_xcache_free(sf_wan_xcache *c);

/* ---- forward ---- */
typedef struct sf_wan_tag {
  int64_t chunk, step;         /* -1 = untagged */
  char pass[16];               /* "" = untagged */
  double timestep;             /* NAN = untagged */
} sf_wan_tag;

typedef struct sf_wan_fwd_opts {
  sf_tensor *clip_fea;         /* [B, n_img, clip_dim] (i2v) */
  sf_tensor *y;                /* [B, C_y, F, H, W] (i2v), concatenated after x */
  sf_wan_kv *kv;               /* causal KV path when set */
  sf_wan_xcache *xcache;       /* optional cross-attention cache */
  int64_t start_frame;         /* absolute frame of x's first frame (KV path) */
  sf_wan_tag tag;
  bool checkpoint;             /* with grad mode on: each block is a checkpoint region (recomputed in backward) */
  int autocast;                /* -1: the model's setting; else an sf_dtype as sf_wan_model.autocast */
  const sf_wan_kv_plan *kv_plan; /* the cache policy's plan for this call; NULL = sf_wan_kv_default_plan */
  /* teacher forcing (CausalWanModel's forward with clean_x): the clean latents [B, C, F, H, W] run as a
   * second sequence before x, with their own timesteps aug_t [B, F] (NULL = zeros); see wan_forward.c */
  sf_tensor *clean_x;
  sf_tensor *aug_t;
  /* features (the discriminator of Self-Forcing's GAN, WanModel._forward with classify_mode): the residual
   * stream after block features[j] (0-based) is returned in feat_out[j] ([B, L, D], with its graph; the
   * caller releases it), and the time embedding e (time_embedding's output, before time_projection) in
   * *e_out ([B, Fe, D]). Not with a KV cache or teacher forcing. */
  int n_features;
  const int *features;
  sf_tensor **feat_out;
  sf_tensor **e_out;
} sf_wan_fwd_opts;

void sf_wan_fwd_opts_init(sf_wan_fwd_opts *o);
/* x [B, C, F, H, W], t [B] or [B, F], context [B, L<=text_len, text_dim] -> f32 [B, out_dim, F, H, W] */
sf_tensor *sf_wan_forward(sf_wan_model *m, sf_tensor *x, sf_tensor *t, sf_tensor *context, const sf_wan_fwd_opts *o);

/* ---- attention capture ---- */
typedef enum { SF_CAP_LOGITS = 0, SF_CAP_PROBS, SF_CAP_MASS } sf_cap_what;
typedef enum { SF_CAP_FRAME = 0, SF_CAP_QUERY_MEAN, SF_CAP_NONE } sf_cap_reduce;

typedef struct sf_cap_filter {
  int64_t *steps; int n_steps;     /* NULL = all */
  int64_t *chunks; int n_chunks;
  char passes[4][16]; int n_passes;
} sf_cap_filter;

typedef struct sf_cap_record sf_cap_record;

struct sf_wan_capture {
  int refcount;
  sf_wan_model *model;             /* weak: cleared on remove */
  sf_wan_capture *next;
  bool *layers;                    /* [num_layers] */
  int num_layers;
  bool cross;
  sf_cap_what what;
  sf_cap_reduce reduce;
  sf_cap_filter where;
  int64_t qf0, qf1, kf0, kf1;      /* reduce = none: absolute query / key frame ranges (inclusive); for
                                      cross-attention the key "frames" are context token indices */
  int64_t max_elems;               /* bound on token-level storage per call (elements) */
  sf_cap_record *records, *last;
  int64_t n_records;
};

sf_wan_capture *sf_wan_capture_add(sf_wan_model *m, const bool *layers, bool cross, sf_cap_what what,
                                   sf_cap_reduce reduce, const sf_cap_filter *where);
/* reduce = none: the explicit frame ranges (required before the capture sees a call) */
int sf_wan_capture_set_range(sf_wan_capture *c, int64_t qf0, int64_t qf1, int64_t kf0, int64_t kf1, int64_t max_elems);
void sf_wan_capture_reset(sf_wan_capture *c);
void sf_wan_capture_remove(sf_wan_capture *c);
void sf_wan_capture_free(sf_wan_capture *c);

typedef struct sf_cap_query {
  int layer;                       /* -1 = the only captured layer */
  int64_t step, chunk;             /* -1 = any */
  char pass[16];                   /* "" = any */
} sf_cap_query;

typedef struct sf_cap_meta {
  int layer;
  int64_t n_records;
  int64_t nq, nk;                  /* result extent (absolute frames / context tokens) */
  double timestep;                 /* of the first matching record (NAN if none) */
  int64_t *chunk_of_frame;         /* [nq] chunk that produced each query frame (-1 none); caller frees */
} sf_cap_meta;

/* the aggregated result: f32 CPU [H, nq, nk] (frame) or [H, nk] (query_mean) or token tensors */
sf_tensor *sf_wan_capture_result(sf_wan_capture *c, const sf_cap_query *q, sf_cap_meta *meta);

#ifdef __cplusplus
}
#endif
#endif

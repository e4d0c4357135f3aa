/* statedict.h — a checkpoint's entries by name (safetensors, sharded safetensors, PyTorch .pt/.pth),
 * opened without reading tensor data; tensors are materialized one at a time on request.
 *
 * How model loaders use it (Wan DiT, T5, VAE, CLIP):
 *
 *   sf_statedict *sd = sf_statedict_open("Wan2.1-T2V-1.3B/diffusion_pytorch_model.safetensors");
 *   if (!sd) return -1;                           // sf_last_error() names the file and the problem
 *   for (int i = 0; i < sf_statedict_count(sd); i++) {
 *     const sf_sd_entry *e = sf_statedict_entry(sd, i);
 *     if (e->kind != SF_SD_TENSOR) continue;        // .pt files may hold ints/strings too
 *     ... check e->name / e->dtype / e->ndim / e->shape before touching data ...
 *   }
 *   sf_tensor *w = sf_statedict_get(sd, "blocks.0.self_attn.q.weight"); // new reference, CPU
 *   ...
 *   sf_release(w);
 *   sf_statedict_close(sd);                        // tensors already obtained stay valid
 *
 * Paths accepted by sf_statedict_open (format picked from the content, not the extension):
 *   - a .safetensors file                 -> one entry per tensor, file order (header order)
 *   - a *.safetensors.index.json          -> every shard in its "weight_map", loaded as one map
 *   - a torch.save zip (.pt/.pth/.bin)    -> nested dicts/lists flattened to dotted names
 *                                            ("generator.model.blocks.0.self_attn.q.weight",
 *                                            list items by 0-based index: "param_groups.0.lr")
 *   - a directory                         -> its *.safetensors.index.json, else its only *.safetensors
 *
 * Memory: safetensors tensors are zero-copy views of a private (copy-on-write) mmap of the file, so
 * writing into them never changes the file. .pt storages are mmapped the same way when the zip member
 * is stored uncompressed (torch.save always does this); a compressed member is inflated into memory
 * when first used. Tensors sharing a storage in a .pt (views, tied weights) share one sf_storage.
 * A tensor whose bytes sit at an address not aligned to its element size (unpadded headers from
 * other writers) is returned as an aligned private copy instead. Lookups are hashed: opening a
 * 20k-tensor .pt takes ~0.3 s.
 * Nothing is read from the data region until sf_statedict_get; 30 GB files open in milliseconds.
 *
 * Errors: every function returning NULL/-1 sets sf_error with the file name and what is wrong
 * (missing key, bad offset, unsupported pickle global, ...). Never aborts on bad input. */
#ifndef SF_IO_STATEDICT_H
#define SF_IO_STATEDICT_H

#include <stdint.h>

#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  SF_SD_TENSOR = 0,
  SF_SD_INT,    /* .pt only: Python int (also bool -> SF_SD_BOOL) */
  SF_SD_FLOAT,
  SF_SD_BOOL,
  SF_SD_STRING, /* str or bytes (bytes keep their length in str_len) */
  SF_SD_NONE,
} sf_sd_kind;

typedef struct sf_sd_entry {
  const char *name;   /* full dotted name */
  sf_sd_kind kind;
  /* SF_SD_TENSOR: */
  sf_dtype dtype;
  int ndim;
  int64_t shape[SF_MAX_DIMS];
  /* scalar leaves: */
  int64_t i;          /* SF_SD_INT, SF_SD_BOOL */
  double f;           /* SF_SD_FLOAT */
  const char *str;    /* SF_SD_STRING (NUL-terminated; str_len bytes) */
  size_t str_len;
  /* private to statedict.c */
  int src;            /* index of the source (shard file / pickle tensor) */
  int64_t aux;
} sf_sd_entry;

typedef struct sf_statedict sf_statedict;

sf_statedict *sf_statedict_open(const char *path);
void sf_statedict_close(sf_statedict *sd); /* NULL-safe; materialized tensors outlive it */

const char *sf_statedict_path(const sf_statedict *sd);
/* "safetensors", "safetensors-sharded" or "pt" */
const char *sf_statedict_format(const sf_statedict *sd);
int sf_statedict_count(const sf_statedict *sd);
const sf_sd_entry *sf_statedict_entry(const sf_statedict *sd, int i); /* 0 <= i < count */
/* NULL when absent (and no error is set: absence is a normal answer) */
const sf_sd_entry *sf_statedict_find(const sf_statedict *sd, const char *name);

/* The tensor named `name` as a new CPU reference (sf_release it). NULL + error naming the file and
 * the key when it is absent or not a tensor, or when the data is out of the file's bounds. */
sf_tensor *sf_statedict_get(sf_statedict *sd, const char *name);
sf_tensor *sf_statedict_get_entry(sf_statedict *sd, const sf_sd_entry *e);

/* safetensors "__metadata__" value for key (first shard that has it), or NULL */
const char *sf_statedict_metadata(const sf_statedict *sd, const char *key);
int sf_statedict_metadata_count(const sf_statedict *sd);
int sf_statedict_metadata_at(const sf_statedict *sd, int i, const char **key, const char **value);

/* ---- writing ---- */

/* A safetensors file with the n named tensors (any device/dtype among f32 bf16 f16 i64 i32 u8 bool
 * f64; non-contiguous views are packed). Written to a temporary name in the same folder and renamed,
 * so a reader never sees half a file. meta_keys/meta_values (may be NULL, n_meta 0) fill __metadata__. */
int sf_safetensors_save(const char *path, int n, const char *const *names, sf_tensor *const *tensors,
                        int n_meta, const char *const *meta_keys, const char *const *meta_values);

/* A torch.load-able .pt (torch.save zip layout, pickle protocol 2) holding a flat dict
 * {name: tensor}. Nested dicts: see sf_pt_save_tree in pt.h. Atomic like the above. */
int sf_pt_save_flat(const char *path, int n, const char *const *names, sf_tensor *const *tensors);

#ifdef __cplusplus
}
#endif
#endif

/* pt.h — writing torch.load-able .pt files (torch.save's zip layout, pickle protocol 2).
 *
 * Build the value tree with begin/end calls, then save:
 *   sf_pt_writer *w = sf_pt_writer_new();
 *   sf_pt_begin_dict(w, NULL);                 // top level
 *     sf_pt_begin_dict(w, "generator");
 *       sf_pt_tensor(w, "model.patch_embedding.weight", t);
 *     sf_pt_end(w);
 *     sf_pt_int(w, "step", 600);
 *   sf_pt_end(w);
 *   int rc = sf_pt_writer_save(w, "model.pt"); // atomic (temp file + rename)
 *   sf_pt_writer_free(w);
 * `key` is NULL for the top-level value and for list items, a dict key otherwise. A dict value may have
 * an integer key instead (torch's optimizer state is keyed by parameter index): call
 * sf_pt_int_key(w, 3) and then add the value with key NULL.
 * Tensors sharing a CPU storage are written once and stay shared (views keep offset/strides);
 * tensors on other devices are copied to the CPU. Archives over 4 GB use zip64. */
#ifndef SF_IO_PT_H
#define SF_IO_PT_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

typedef struct sf_pt_writer sf_pt_writer;

sf_pt_writer *sf_pt_writer_new(void);
void sf_pt_writer_free(sf_pt_writer *w); /* NULL-safe; releases retained tensors */
int sf_pt_begin_dict(sf_pt_writer *w, const char *key);
int sf_pt_begin_list(sf_pt_writer *w, const char *key);
int sf_pt_end(sf_pt_writer *w);
int sf_pt_int_key(sf_pt_writer *w, int64_t key); /* the next value of the open dict has this integer key */
int sf_pt_tensor(sf_pt_writer *w, const char *key, sf_tensor *t); /* retains t until free */
int sf_pt_int(sf_pt_writer *w, const char *key, int64_t v);
int sf_pt_float(sf_pt_writer *w, const char *key, double v);
int sf_pt_bool(sf_pt_writer *w, const char *key, int v);
int sf_pt_str(sf_pt_writer *w, const char *key, const char *s, size_t len);
int sf_pt_none(sf_pt_writer *w, const char *key);
int sf_pt_writer_save(sf_pt_writer *w, const char *path);

#endif

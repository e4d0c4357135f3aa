/* wan_capture.c — attention capture registered on model layers: per matching attention call the kernel
 * accumulates frame-level sums (logits, probabilities) into small device buffers; each call is filed
 * as a record (absolute query/key ids, tags), and results aggregate the records on request. Memory is
 * O(records * heads * Fq * Fk); no token x token map is ever kept. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/ops.h"
#include "models/wan.h"
#include "models/wan_internal.h"

struct sf_cap_record {
  sf_cap_record *next;
  int layer, img;
  int64_t chunk, step;
  char pass[16];
  double timestep;
  int64_t B, H, nqg, nkg, q_group;
  int64_t *q_ids, *k_ids;
  int64_t *vis;          /* [nqg * nkg] visible key tokens per (query group, key group) */
  float *sl, *sp;        /* [H * nqg * nkg] sums over batch, query tokens, visible key tokens */
  /* token level (reduce = none): groups [tg0, tg0+tng) x key groups [tk0g, tk0g+tnk) of this call */
  int64_t tg0, tng, tkg0, tnk, k_group;
  float *tok;            /* [H, tng*q_group, tnk*k_group] mean over batch, NaN where not visible */
};

static void record_free(sf_cap_record *r) {
  if (!r) return;
  free(r->q_ids), free(r->k_ids), free(r->vis), free(r->sl), free(r->sp), free(r->tok);
  free(r);
}

sf_wan_capture *sf_wan_capture_add(sf_wan_model *m, const bool *layers, bool cross, sf_cap_what what,
                                   sf_cap_reduce reduce, const sf_cap_filter *where) {
  sf_wan_capture *c = calloc(1, sizeof *c);
  if (!c) return sf_error("capture_attention: out of memory"), NULL;
  c->refcount = 1;
  c->num_layers = (int)m->cfg.num_layers;
  c->layers = calloc((size_t)c->num_layers, sizeof(bool));
  if (!c->layers) {
    free(c);
    return sf_error("capture_attention: out of memory"), NULL;
  }
  memcpy(c->layers, layers, sizeof(bool) * (size_t)c->num_layers);
  c->cross = cross;
  c->what = what;
  c->reduce = reduce;
  if (where) {
    c->where = *where;
    c->where.steps = NULL, c->where.chunks = NULL;
    if (where->n_steps) {
      c->where.steps = malloc(sizeof(int64_t) * (size_t)where->n_steps);
      if (c->where.steps) memcpy(c->where.steps, where->steps, sizeof(int64_t) * (size_t)where->n_steps);
    }
    if (where->n_chunks) {
      c->where.chunks = malloc(sizeof(int64_t) * (size_t)where->n_chunks);
      if (c->where.chunks) memcpy(c->where.chunks, where->chunks, sizeof(int64_t) * (size_t)where->n_chunks);
    }
  }
  c->qf0 = c->kf0 = 0, c->qf1 = c->kf1 = -1;
  c->max_elems = (int64_t)1 << 27;
  c->model = m;
  c->next = m->captures;
  m->captures = c;
  c->refcount++; /* the model's reference */
  return c;
}

int sf_wan_capture_set_range(sf_wan_capture *c, int64_t qf0, int64_t qf1, int64_t kf0, int64_t kf1, int64_t max_elems) {
  if (qf0 < 0 || qf1 < qf0 || kf0 < 0 || kf1 < kf0)
    return sf_error("capture_attention: token-level ranges must be q={first, last}, k={first, last} with 0 <= first <= last");
  c->qf0 = qf0, c->qf1 = qf1, c->kf0 = kf0, c->kf1 = kf1;
  if (max_elems > 0) c->max_elems = max_elems;
  return 0;
}

/* token level: the local group ranges of this call inside the capture's frame ranges (false if none) */
static bool tok_range(const sf_wan_capture *c, const sf_cap_call *call, int64_t *g0, int64_t *ng, int64_t *j0, int64_t *nj) {
  int64_t a = -1, b = -1, x = -1, y = -1;
  for (int64_t g = 0; g < call->nqg; g++)
    if (call->q_ids[g] >= c->qf0 && call->q_ids[g] <= c->qf1) { if (a < 0) a = g; b = g; }
  for (int64_t j = 0; j < call->nkg; j++)
    if (call->k_ids[j] >= c->kf0 && call->k_ids[j] <= c->kf1) { if (x < 0) x = j; y = j; }
  if (a < 0 || x < 0) return false;
  *g0 = a, *ng = b - a + 1, *j0 = x, *nj = y - x + 1;
  return true;
}

void sf_wan_capture_reset(sf_wan_capture *c) {
  sf_cap_record *r = c->records;
  while (r) {
    sf_cap_record *n = r->next;
    record_free(r);
    r = n;
  }
  c->records = c->last = NULL;
  c->n_records = 0;
}

void sf_wan_capture_remove(sf_wan_capture *c) {
  sf_wan_model *m = c->model;
  if (!m) return;
  for (sf_wan_capture **p = &m->captures; *p; p = &(*p)->next)
    if (*p == c) {
      *p = c->next;
      break;
    }
  c->model = NULL;
  c->next = NULL;
  sf_wan_capture_free(c); /* the model's reference */
}

void sf_wan_capture_free(sf_wan_capture *c) {
  if (!c || --c->refcount > 0) return;
  sf_wan_capture_reset(c);
  free(c->layers), free(c->where.steps), free(c->where.chunks);
  free(c);
}

static bool in_list(const int64_t *v, int n, int64_t x) {
  for (int i = 0; i < n; i++)
    if (v[i] == x) return true;
  return false;
}

static bool wants(const sf_wan_capture *c, const sf_cap_call *call) {
  if (call->layer < 0 || call->layer >= c->num_layers || !c->layers[call->layer] || c->cross != call->cross) return false;
  const sf_wan_tag *t = call->tag;
  if (c->where.n_steps && !in_list(c->where.steps, c->where.n_steps, t->step)) return false;
  if (c->where.n_chunks && !in_list(c->where.chunks, c->where.n_chunks, t->chunk)) return false;
  if (c->where.n_passes) {
    bool ok = false;
    for (int i = 0; i < c->where.n_passes; i++) ok |= !strcmp(c->where.passes[i], t->pass);
    if (!ok) return false;
  }
  if (c->reduce == SF_CAP_NONE) {
    int64_t a, b, x, y;
    if (c->qf1 < 0 || !tok_range(c, call, &a, &b, &x, &y)) return false;
  }
  return true;
}

static void drop_buffers(sf_attn_desc *desc) {
  sf_release(desc->cap_logits), sf_release(desc->cap_probs), sf_release(desc->tok_logits), sf_release(desc->tok_probs);
  desc->cap_logits = desc->cap_probs = desc->tok_logits = desc->tok_probs = NULL;
}

int sf_wan_capture_begin(sf_wan_model *m, const sf_cap_call *call, sf_attn_desc *desc, sf_device dev) {
  int n = 0;
  for (sf_wan_capture *c = m->captures; c; c = c->next) n += wants(c, call);
  if (!n) return 0;
  int64_t shp[3] = {call->H, call->nqg, call->nkg};
  desc->k_group = call->k_group;
  desc->cap_logits = sf_zeros(3, shp, SF_F32, dev);
  desc->cap_probs = desc->cap_logits ? sf_zeros(3, shp, SF_F32, dev) : NULL;
  if (!desc->cap_probs) {
    sf_release(desc->cap_logits);
    desc->cap_logits = NULL;
    return -1;
  }
  /* one token range per attention call: the first token-level capture that wants it decides */
  for (sf_wan_capture *c = m->captures; c; c = c->next) {
    if (c->reduce != SF_CAP_NONE || !wants(c, call)) continue;
    int64_t g0 = 0, ng = 0, j0 = 0, nj = 0;
    tok_range(c, call, &g0, &ng, &j0, &nj);
    const int64_t tq0 = g0 * call->q_group, tq1 = (g0 + ng) * call->q_group, tk0 = j0 * call->k_group, tk1 = (j0 + nj) * call->k_group;
    if (desc->tok_logits) {
      if (desc->tq0 != tq0 || desc->tq1 != tq1 || desc->tk0 != tk0 || desc->tk1 != tk1) {
        drop_buffers(desc);
        return sf_error("capture: two token-level captures ask layer %d for different token ranges in one call", call->layer), -1;
      }
      continue;
    }
    const int64_t elems = call->H * (tq1 - tq0) * (tk1 - tk0);
    if (elems > c->max_elems) {
      drop_buffers(desc);
      return sf_error("capture: the token-level range of layer %d holds %lld values per call, above the limit of %lld "
                      "(narrow the frame ranges or raise max_elems)", call->layer, (long long)elems, (long long)c->max_elems), -1;
    }
    int64_t ts[3] = {call->H, tq1 - tq0, tk1 - tk0};
    desc->tq0 = tq0, desc->tq1 = tq1, desc->tk0 = tk0, desc->tk1 = tk1;
    desc->tok_logits = sf_zeros(3, ts, SF_F32, dev);
    desc->tok_probs = desc->tok_logits ? sf_zeros(3, ts, SF_F32, dev) : NULL;
    if (!desc->tok_probs) {
      drop_buffers(desc);
      return -1;
    }
  }
  return n;
}

static float *host_copy(sf_tensor *t) {
  sf_tensor *c = sf_to_device(t, sf_cpu());
  sf_tensor *cc = c ? sf_contiguous(c) : NULL;
  float *out = cc ? malloc(sizeof(float) * (size_t)sf_numel(cc)) : NULL;
  if (out) memcpy(out, sf_data_ptr(cc), sizeof(float) * (size_t)sf_numel(cc));
  sf_release(c), sf_release(cc);
  return out;
}

int sf_wan_capture_end(sf_wan_model *m, const sf_cap_call *call, sf_attn_desc *desc) {
  int rc = 0;
  float *sl = host_copy(desc->cap_logits), *sp = host_copy(desc->cap_probs);
  float *tl = desc->tok_logits ? host_copy(desc->tok_logits) : NULL, *tp = desc->tok_probs ? host_copy(desc->tok_probs) : NULL;
  if (!sl || !sp || (desc->tok_logits && (!tl || !tp))) rc = sf_error("capture: could not read the capture buffers back");
  for (sf_wan_capture *c = m->captures; c && !rc; c = c->next) {
    if (!wants(c, call)) continue;
    sf_cap_record *r = calloc(1, sizeof *r);
    const int64_t nq = call->nqg, nk = call->nkg, cells = call->H * nq * nk;
    if (r) {
      r->q_ids = malloc(sizeof(int64_t) * (size_t)nq);
      r->k_ids = malloc(sizeof(int64_t) * (size_t)nk);
      r->vis = malloc(sizeof(int64_t) * (size_t)(nq * nk));
      r->sl = malloc(sizeof(float) * (size_t)cells);
      r->sp = malloc(sizeof(float) * (size_t)cells);
    }
    if (!r || !r->q_ids || !r->k_ids || !r->vis || !r->sl || !r->sp) {
      record_free(r);
      rc = sf_error("capture: out of memory");
      break;
    }
    r->layer = call->layer, r->img = call->img, r->chunk = call->tag->chunk, r->step = call->tag->step;
    memcpy(r->pass, call->tag->pass, sizeof r->pass);
    r->timestep = call->tag->timestep;
    r->B = call->B, r->H = call->H, r->nqg = nq, r->nkg = nk, r->q_group = call->q_group;
    memcpy(r->q_ids, call->q_ids, sizeof(int64_t) * (size_t)nq);
    memcpy(r->k_ids, call->k_ids, sizeof(int64_t) * (size_t)nk);
    memcpy(r->sl, sl, sizeof(float) * (size_t)cells);
    memcpy(r->sp, sp, sizeof(float) * (size_t)cells);
    for (int64_t g = 0; g < nq; g++) {
      const int64_t lo = call->kv_lo ? call->kv_lo[g] : 0, hi = call->kv_hi ? call->kv_hi[g] : nk * call->k_group;
      for (int64_t j = 0; j < nk; j++) {
        int64_t a = j * call->k_group, b = a + call->k_group;
        if (a < lo) a = lo;
        if (b > hi) b = hi;
        r->vis[g * nk + j] = b > a ? b - a : 0;
      }
    }
    if (c->reduce == SF_CAP_NONE && desc->tok_logits) {
      r->k_group = call->k_group;
      r->tg0 = desc->tq0 / call->q_group, r->tng = (desc->tq1 - desc->tq0) / call->q_group;
      r->tkg0 = desc->tk0 / call->k_group, r->tnk = (desc->tk1 - desc->tk0) / call->k_group;
      const size_t ne = (size_t)(call->H * (desc->tq1 - desc->tq0) * (desc->tk1 - desc->tk0));
      r->tok = malloc(sizeof(float) * ne);
      if (!r->tok) {
        record_free(r);
        rc = sf_error("capture: out of memory for token-level values");
        break;
      }
      memcpy(r->tok, c->what == SF_CAP_LOGITS ? tl : tp, sizeof(float) * ne);
    }
    if (c->last) c->last->next = r;
    else c->records = r;
    c->last = r;
    c->n_records++;
  }
  free(sl), free(sp), free(tl), free(tp);
  sf_release(desc->cap_logits), sf_release(desc->cap_probs), sf_release(desc->tok_logits), sf_release(desc->tok_probs);
  desc->cap_logits = desc->cap_probs = desc->tok_logits = desc->tok_probs = NULL;
  return rc;
}

static bool matches(const sf_cap_record *r, const sf_cap_query *q, int layer) {
  if (r->layer != layer) return false;
  if (q->step >= 0 && r->step != q->step) return false;
  if (q->chunk >= 0 && r->chunk != q->chunk) return false;
  if (q->pass[0] && strcmp(q->pass, r->pass)) return false;
  return true;
}

sf_tensor *sf_wan_capture_result(sf_wan_capture *c, const sf_cap_query *q, sf_cap_meta *meta) {
  int layer = q->layer;
  if (layer < 0) {
    int n = 0;
    for (int i = 0; i < c->num_layers; i++)
      if (c->layers[i]) n++, layer = i;
    if (n != 1) return sf_error("capture result: this capture covers %d layers; pass layer=", n), NULL;
  } else if (layer >= c->num_layers || !c->layers[layer]) {
    return sf_error("capture result: layer %d is not captured by this capture", layer), NULL;
  }
  int64_t nq = 0, nk = 0, H = 0, nrec = 0;
  double ts = NAN;
  for (sf_cap_record *r = c->records; r; r = r->next) {
    if (!matches(r, q, layer)) continue;
    if (!nrec) ts = r->timestep, H = r->H;
    nrec++;
    for (int64_t g = 0; g < r->nqg; g++) nq = r->q_ids[g] + 1 > nq ? r->q_ids[g] + 1 : nq;
    for (int64_t j = 0; j < r->nkg; j++) nk = r->k_ids[j] + 1 > nk ? r->k_ids[j] + 1 : nk;
  }
  if (!nrec) return sf_error("capture result: no attention call of layer %d matched (step/pass/chunk filters, or nothing ran yet)", layer), NULL;
  if (!c->cross) nq = nk = nq > nk ? nq : nk;
  double *SL = calloc((size_t)(H * nq * nk), sizeof(double)), *SP = calloc((size_t)(H * nq * nk), sizeof(double));
  double *CN = calloc((size_t)(nq * nk), sizeof(double)), *QC = calloc((size_t)(nq * nk), sizeof(double));
  int64_t *chunk_of = malloc(sizeof(int64_t) * (size_t)nq);
  sf_tensor *out = NULL;
  if (!SL || !SP || !CN || !QC || !chunk_of) {
    sf_error("capture result: out of memory");
    goto done;
  }
  for (int64_t f = 0; f < nq; f++) chunk_of[f] = -1;
  for (sf_cap_record *r = c->records; r; r = r->next) {
    if (!matches(r, q, layer)) continue;
    for (int64_t g = 0; g < r->nqg; g++) {
      const int64_t fq = r->q_ids[g];
      if (chunk_of[fq] < 0) chunk_of[fq] = r->chunk;
      for (int64_t j = 0; j < r->nkg; j++) {
        const int64_t fk = r->k_ids[j], vis = r->vis[g * r->nkg + j];
        if (fk < 0 || !vis) continue;
        CN[fq * nk + fk] += (double)vis * r->q_group * r->B;
        QC[fq * nk + fk] += (double)r->q_group * r->B;
        for (int64_t h = 0; h < H; h++) {
          SL[(h * nq + fq) * nk + fk] += r->sl[(h * r->nqg + g) * r->nkg + j];
          SP[(h * nq + fq) * nk + fk] += r->sp[(h * r->nqg + g) * r->nkg + j];
        }
      }
    }
  }
  if (c->reduce == SF_CAP_NONE) {
    /* [H, query frames x S, key frames x key group] over the capture's ranges; calls covering the same
     * cell are averaged; cells no call saw (or could see) are NaN. "mass" keeps probabilities here. */
    int64_t S = 0, KG = 0;
    for (sf_cap_record *r = c->records; r; r = r->next)
      if (matches(r, q, layer) && r->tok) S = r->q_group, KG = r->k_group;
    if (!S) {
      sf_error("capture result: no token-level values recorded for layer %d", layer);
      goto done;
    }
    const int64_t nqf = c->qf1 - c->qf0 + 1, nkf = c->kf1 - c->kf0 + 1, NQ = nqf * S, NK = nkf * KG;
    int64_t shp[3] = {H, NQ, NK};
    out = sf_zeros(3, shp, SF_F32, sf_cpu());
    float *cnt = calloc((size_t)(H * NQ * NK), sizeof(float));
    if (!out || !cnt) {
      free(cnt);
      sf_release(out), out = NULL;
      sf_error("capture result: out of memory");
      goto done;
    }
    float *o = sf_data_ptr(out);
    for (sf_cap_record *r = c->records; r; r = r->next) {
      if (!matches(r, q, layer) || !r->tok) continue;
      const int64_t rq = r->tng * S, rk = r->tnk * KG;
      for (int64_t g = 0; g < r->tng; g++) {
        const int64_t fq = r->q_ids[r->tg0 + g] - c->qf0;
        if (fq < 0 || fq >= nqf) continue;
        for (int64_t j = 0; j < r->tnk; j++) {
          const int64_t fk = r->k_ids[r->tkg0 + j] - c->kf0;
          if (fk < 0 || fk >= nkf) continue;
          for (int64_t h = 0; h < H; h++)
            for (int64_t a = 0; a < S; a++)
              for (int64_t b2 = 0; b2 < KG; b2++) {
                const float v = r->tok[(h * rq + g * S + a) * rk + j * KG + b2];
                const int64_t cell = (h * NQ + fq * S + a) * NK + fk * KG + b2;
                if (isnan(v)) continue;
                o[cell] += v;
                cnt[cell] += 1;
              }
        }
      }
    }
    for (int64_t i = 0; i < H * NQ * NK; i++) o[i] = cnt[i] > 0 ? o[i] / cnt[i] : NAN;
    free(cnt);
    if (meta) {
      meta->layer = layer, meta->n_records = nrec, meta->nq = nqf, meta->nk = nkf, meta->timestep = ts;
      meta->chunk_of_frame = chunk_of;
      chunk_of = NULL;
    }
    goto done;
  }
  const double *S = c->what == SF_CAP_LOGITS ? SL : SP;
  const double *C = c->what == SF_CAP_MASS ? QC : CN;
  if (c->reduce == SF_CAP_FRAME) {
    int64_t shp[3] = {H, nq, nk};
    out = sf_empty(3, shp, SF_F32, sf_cpu());
    if (!out) goto done;
    float *o = sf_data_ptr(out);
    for (int64_t h = 0; h < H; h++)
      for (int64_t i = 0; i < nq * nk; i++) o[h * nq * nk + i] = C[i] > 0 ? (float)(S[h * nq * nk + i] / C[i]) : NAN;
  } else {
    int64_t shp[2] = {H, nk};
    out = sf_empty(2, shp, SF_F32, sf_cpu());
    if (!out) goto done;
    float *o = sf_data_ptr(out);
    for (int64_t h = 0; h < H; h++)
      for (int64_t j = 0; j < nk; j++) {
        double s = 0, n = 0;
        for (int64_t i = 0; i < nq; i++) s += S[(h * nq + i) * nk + j], n += C[i * nk + j];
        o[h * nk + j] = n > 0 ? (float)(s / n) : NAN;
      }
  }
  if (meta) {
    meta->layer = layer, meta->n_records = nrec, meta->nq = nq, meta->nk = nk, meta->timestep = ts;
    meta->chunk_of_frame = chunk_of;
    chunk_of = NULL;
  }
done:
  free(SL), free(SP), free(CN), free(QC), free(chunk_of);
  return out;
}

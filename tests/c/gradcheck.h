/* gradcheck.h — finite-difference gradient check in f64 on the CPU, shared by the autograd tests.
 * A case builds its output from n inputs; the loss is sum(out * R) for a fixed random R, so the
 * analytic gradient (backward with upstream R) is compared with central differences of that loss. */
#ifndef SF_GRADCHECK_H
#define SF_GRADCHECK_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "autograd/autograd.h"
#include "core/error.h"
#include "ops/ops.h"

#define GC_MAX_IN 4

typedef struct gc_case {
  const char *name;
  int n_in;
  int ndim[GC_MAX_IN];
  int64_t shape[GC_MAX_IN][SF_MAX_DIMS];
  /* input values: 0 = randn, 1 = positive (0.5 .. 1.5), 2 = randn kept away from 0 and ties (|x| >= 0.2, distinct) */
  int dist[GC_MAX_IN];
  bool no_grad[GC_MAX_IN]; /* input does not require grad */
  sf_tensor *(*fn)(sf_tensor **in, const struct gc_case *c);
  double p[4];
  int ip[4];
  double tol; /* 0 = 1e-6 relative */
  double h;   /* finite-difference step; 0 = 1e-6 */
} gc_case;

static double gc_loss(const gc_case *c, sf_tensor **in, sf_tensor *R) {
  bool prev = sf_set_grad_enabled(false);
  sf_tensor *out = c->fn(in, c);
  double l = NAN;
  if (out) {
    sf_tensor *o = sf_cast(out, SF_F64);
    sf_tensor *oc = o ? sf_contiguous(o) : NULL;
    if (oc) {
      const double *po = sf_data_ptr(oc), *pr = sf_data_ptr(R);
      l = 0;
      for (int64_t i = 0; i < sf_numel(oc); i++) l += po[i] * pr[i];
    }
    sf_release(o);
    sf_release(oc);
  }
  sf_release(out);
  sf_set_grad_enabled(prev);
  return l;
}

static void gc_fill(sf_tensor *t, int dist, uint64_t *state) {
  double *p = sf_data_ptr(t);
  int64_t n = sf_numel(t);
  for (int64_t i = 0; i < n; i++) {
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    double u = (double)(*state >> 11) / 9007199254740992.0; /* [0,1) */
    if (dist == 1) p[i] = 0.5 + u;
    else if (dist == 2) p[i] = (u < 0.5 ? -1 : 1) * (0.2 + 1.3 * fmod(u * 2, 1.0)) + 1e-3 * (double)i;
    else p[i] = (u - 0.5) * 3.0;
  }
}

/* returns the max relative error (|a - n| / max(1, |n|)); -1 on an error */
static double gc_run(const gc_case *c, uint64_t seed, char *why, size_t nwhy) {
  sf_tensor *in[GC_MAX_IN] = {0};
  double worst = -1;
  uint64_t st = seed;
  for (int i = 0; i < c->n_in; i++) {
    in[i] = sf_empty(c->ndim[i], c->shape[i], SF_F64, sf_cpu());
    if (!in[i]) goto out;
    gc_fill(in[i], c->dist[i], &st);
    if (!c->no_grad[i]) sf_requires_grad_(in[i], true);
  }
  sf_tensor *out = c->fn(in, c);
  if (!out) { snprintf(why, nwhy, "forward failed: %s", sf_last_error()); goto out; }
  sf_tensor *R = sf_empty(out->ndim, out->shape, SF_F64, sf_cpu());
  gc_fill(R, 0, &st);
  if (!out->requires_grad) {
    snprintf(why, nwhy, "output does not require grad");
    sf_release(out); sf_release(R);
    goto out;
  }
  sf_tensor *Ro = sf_cast(R, out->dtype);
  int rc = sf_backward(out, Ro, false);
  sf_release(Ro);
  sf_release(out);
  if (rc) { snprintf(why, nwhy, "backward failed: %s", sf_last_error()); sf_release(R); goto out; }
  worst = 0;
  const double h = c->h > 0 ? c->h : 1e-6;
  for (int i = 0; i < c->n_in && worst >= 0; i++) {
    if (c->no_grad[i]) continue;
    sf_tensor *g = in[i]->grad ? sf_cast(in[i]->grad, SF_F64) : NULL;
    double *x = sf_data_ptr(in[i]);
    const double *pg = g ? (const double *)sf_data_ptr(g) : NULL;
    for (int64_t j = 0; j < sf_numel(in[i]); j++) {
      double x0 = x[j];
      x[j] = x0 + h;
      double lp = gc_loss(c, in, R);
      x[j] = x0 - h;
      double lm = gc_loss(c, in, R);
      x[j] = x0;
      double num = (lp - lm) / (2 * h), ana = pg ? pg[j] : 0.0;
      double err = fabs(ana - num) / fmax(1.0, fabs(num));
      if (!(err <= worst)) {
        worst = err;
        snprintf(why, nwhy, "input %d element %lld: analytic %.10g, numeric %.10g", i + 1, (long long)j, ana, num);
      }
      if (isnan(err)) { worst = INFINITY; break; }
    }
    sf_release(g);
  }
  sf_release(R);
out:
  for (int i = 0; i < c->n_in; i++) sf_release(in[i]);
  return worst;
}

#endif

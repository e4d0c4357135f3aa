/* optim.c — argument checks and dispatch for the fused optimizer pieces (optim.h) to the train table. */
#include <math.h>

#include "autograd/autograd.h"
#include "autograd/optim.h"
#include "backend/backend.h"
#include "backend/train_ops.h"
#include "core/error.h"

static const sf_train_ops *train_for(sf_tensor *t, const char *op) {
  const sf_backend *b = sf_backend_of(t);
  if (!b) return NULL;
  if (!b->train) {
    char buf[32];
    sf_error("%s: device %s has no training ops", op, sf_device_str(sf_device_of(t), buf, sizeof buf));
    return NULL;
  }
  return b->train;
}

static int check_like(sf_tensor *ref, sf_tensor *t, const char *op, const char *what, bool need_f32) {
  char a[96], b[96];
  if (!t) return sf_error("%s: %s is missing", op, what);
  if (!sf_same_shape(ref, t))
    return sf_error("%s: %s has shape %s but the parameter has %s", op, what, sf_shape_str(t, a, sizeof a), sf_shape_str(ref, b, sizeof b));
  if (!sf_device_eq(sf_device_of(ref), sf_device_of(t)))
    return sf_error("%s: %s is on %s but the parameter is on %s", op, what, sf_device_str(sf_device_of(t), a, sizeof a),
                    sf_device_str(sf_device_of(ref), b, sizeof b));
  if (!sf_is_contiguous(t)) return sf_error("%s: %s must be contiguous", op, what);
  if (need_f32 && t->dtype != SF_F32) return sf_error("%s: %s must be f32, got %s", op, what, sf_dtype_name(t->dtype));
  if (!need_f32 && t->dtype != SF_F32 && t->dtype != SF_BF16 && t->dtype != SF_F16)
    return sf_error("%s: %s must be f32/bf16/f16, got %s", op, what, sf_dtype_name(t->dtype));
  return 0;
}

int sf_adamw_update(sf_tensor *param, sf_tensor *master, sf_tensor *grad, sf_tensor *exp_avg, sf_tensor *exp_avg_sq,
                    double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step) {
  const char *op = "adamw";
  if (check_like(param, param, op, "parameter", false) || check_like(param, grad, op, "grad", false) ||
      check_like(param, exp_avg, op, "exp_avg", true) || check_like(param, exp_avg_sq, op, "exp_avg_sq", true))
    return -1;
  if (master && check_like(param, master, op, "master weights", true)) return -1;
  if (!master && param->dtype != SF_F32) return sf_error("adamw: a %s parameter needs f32 master weights", sf_dtype_name(param->dtype));
  if (step < 1) return sf_error("adamw: step must be >= 1, got %lld", (long long)step);
  if (!(lr >= 0) || !(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1) || !(eps >= 0) || !(weight_decay >= 0))
    return sf_error("adamw: invalid hyper-parameters lr=%g betas=(%g, %g) eps=%g weight_decay=%g", lr, beta1, beta2, eps, weight_decay);
  const sf_train_ops *tr = train_for(param, op);
  if (!tr) return -1;
  double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
  return tr->adamw(param, master, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, bc1, bc2);
}

int sf_sum_sq(sf_tensor *t, double *out) {
  const sf_train_ops *tr = train_for(t, "sum_sq");
  if (!tr) return -1;
  if (!sf_dtype_is_float(t->dtype)) return sf_error("sum_sq: needs a float tensor, got %s", sf_dtype_name(t->dtype));
  sf_tensor *c = sf_contiguous(t);
  if (!c) return -1;
  int rc = tr->sum_sq(c, out);
  sf_release(c);
  return rc;
}

double sf_clip_grad_norm(sf_tensor *const *params, int n, double max_norm) {
  double total = 0;
  for (int i = 0; i < n; i++) {
    sf_tensor *g = params[i] ? params[i]->grad : NULL;
    if (!g) continue;
    double s;
    if (sf_sum_sq(g, &s)) return -1;
    total += s;
  }
  double norm = sqrt(total);
  double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0) {
    bool prev = sf_set_grad_enabled(false);
    for (int i = 0; i < n; i++) {
      sf_tensor *g = params[i] ? params[i]->grad : NULL;
      if (g && sf_binary_scalar_(SF_BIN_MUL, g, (double)(float)coef)) { sf_set_grad_enabled(prev); return -1; }
    }
    sf_set_grad_enabled(prev);
  }
  return norm;
}

int sf_ema_update(sf_tensor *shadow, sf_tensor *param, double decay) {
  if (check_like(shadow, shadow, "ema", "shadow", true)) return -1;
  sf_tensor *p = sf_contiguous(param);
  if (!p) return -1;
  int rc = check_like(shadow, p, "ema", "parameter", false);
  const sf_train_ops *tr = rc ? NULL : train_for(shadow, "ema");
  rc = tr ? tr->ema(shadow, p, decay) : -1;
  sf_release(p);
  return rc;
}

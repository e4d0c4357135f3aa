/* scope.h — an ownership scope for intermediates: every tensor made inside it is released at sf_scope_end,
 * except the one kept as the result. It replaces the chains of sf_release on every path of a model forward
 * or a backward function (ggml's context, for an eager library).
 *
 *   sf_scope S = SF_SCOPE_INIT;
 *   sf_tensor *t = SF_OWN(S, sf_raw_unary(SF_UN_TANH, a, 0, 0));
 *   sf_tensor *r = SF_OWN(S, sf_raw_mul(g, t));
 *   return sf_scope_end_keep(&S, r);          // releases t, returns r (NULL if any step failed)
 *
 * SF_OWN evaluates its expression only while nothing has failed: after the first NULL, later steps are
 * skipped (their inputs would be NULL) and the error of the failing op stays the one reported. A step that
 * returns an int (0 = done) joins the chain with SF_CHECK. One op per SF_OWN: an SF_OWN nested in another's
 * arguments would hand the outer op a NULL.
 *
 * Early frees: SF_DROP(S, t) releases an owned intermediate before the scope ends, for the few places where
 * holding it to the end would raise peak memory (say why where it is used). */
#ifndef SF_SCOPE_H
#define SF_SCOPE_H

#include <stdbool.h>

#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SF_SCOPE_INLINE 16
typedef struct sf_scope {
  sf_tensor *inl[SF_SCOPE_INLINE]; /* the first intermediates, no allocation */
  sf_tensor **more;                /* the rest */
  int n, cap;
  bool failed;                     /* an owned expression gave NULL */
} sf_scope;
#define SF_SCOPE_INIT {{0}, NULL, 0, 0, false}

/* own t (a new reference; NULL marks the scope failed); returns t */
sf_tensor *sf_scope_own(sf_scope *s, sf_tensor *t);
/* release every owned tensor but `keep` (owned or not), which is returned; NULL when the scope failed */
sf_tensor *sf_scope_end_keep(sf_scope *s, sf_tensor *keep);
/* release every owned tensor */
void sf_scope_end(sf_scope *s);
/* release every owned tensor; 0, or -1 when the scope failed */
int sf_scope_close(sf_scope *s);
/* release the owned tensor t now (its last ownership by the scope); NULL does nothing */
void sf_scope_drop(sf_scope *s, sf_tensor *t);

#define SF_OWN(S, expr) ((S).failed ? (sf_tensor *)0 : sf_scope_own(&(S), (expr)))
#define SF_CHECK(S, rc_expr)                  \
  do {                                        \
    if (!(S).failed && (rc_expr)) (S).failed = true; \
  } while (0)
#define SF_DROP(S, t)          \
  do {                         \
    sf_scope_drop(&(S), (t)); \
    (t) = NULL;                \
  } while (0)

#ifdef __cplusplus
}
#endif
#endif

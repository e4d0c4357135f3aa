/* scope.c — the ownership scope of scope.h. */
#include <stdlib.h>

#include "core/error.h"
#include "core/scope.h"

sf_tensor *sf_scope_own(sf_scope *s, sf_tensor *t) {
  if (!t) {
    s->failed = true;
    return NULL;
  }
  if (s->n < SF_SCOPE_INLINE) {
    s->inl[s->n++] = t;
    return t;
  }
  int i = s->n - SF_SCOPE_INLINE;
  if (i == s->cap) {
    int cap = s->cap ? 2 * s->cap : 16;
    sf_tensor **m = realloc(s->more, sizeof *m * (size_t)cap);
    if (!m) {
      sf_release(t);
      s->failed = true;
      sf_error("scope: out of memory");
      return NULL;
    }
    s->more = m;
    s->cap = cap;
  }
  s->more[i] = t;
  s->n++;
  return t;
}

sf_tensor *sf_scope_end_keep(sf_scope *s, sf_tensor *keep) {
  bool kept = false;
  for (int i = 0; i < s->n; i++) {
    sf_tensor *t = i < SF_SCOPE_INLINE ? s->inl[i] : s->more[i - SF_SCOPE_INLINE];
    if (t == keep && !kept) kept = true; /* the scope's reference becomes the caller's */
    else sf_release(t);
  }
  free(s->more);
  bool failed = s->failed;
  *s = (sf_scope)SF_SCOPE_INIT;
  if (failed) {
    if (kept) sf_release(keep);
    return NULL;
  }
  return kept ? keep : sf_retain(keep);
}

void sf_scope_end(sf_scope *s) { sf_release(sf_scope_end_keep(s, NULL)); }

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

static sf_tensor **slot(sf_scope *s, int i) { return i < SF_SCOPE_INLINE ? &s->inl[i] : &s->more[i - SF_SCOPE_INLINE]; }

void sf_scope_drop(sf_scope *s, sf_tensor *t) {
  if (!t) return;
  for (int i = s->n - 1; i >= 0; i--)
    if (*slot(s, i) == t) {
      *slot(s, i) = NULL; /* a dropped slot is skipped at the end */
      sf_release(t);
      return;
    }
}

int sf_scope_close(sf_scope *s) {
  bool failed = s->failed;
  sf_scope_end(s);
  return failed ? -1 : 0;
}

sf_tensor *sf_scope_end_keep(sf_scope *s, sf_tensor *keep) {
  bool kept = false;
  for (int i = 0; i < s->n; i++) {
    sf_tensor *t = *slot(s, i);
    if (!t) continue;
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

/* pickle.c — restricted unpickler for torch.save data.pkl (protocols 0-5 opcodes that carry plain
 * data; no import, no call, no object construction beyond the known tensor rebuild functions). */
#include "io/pickle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

enum {
  G_ORDERED_DICT, G_REBUILD_TENSOR_V2, G_REBUILD_TENSOR, G_REBUILD_PARAMETER, G_REBUILD_PARAMETER_STATE,
  G_TORCH_SIZE, G_REBUILD_FROM_TYPE_V2, G_TYPE_MARKER, G_STORAGE_TYPE,
};

/* the globals torch.save writes for state dicts; everything else is refused by name */
static const struct { const char *mod, *name; int kind; int dtype; } known_globals[] = {
    {"collections", "OrderedDict", G_ORDERED_DICT, 0},
    {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_TENSOR_V2, 0},
    {"torch._utils", "_rebuild_tensor", G_REBUILD_TENSOR, 0},
    {"torch._utils", "_rebuild_parameter", G_REBUILD_PARAMETER, 0},
    {"torch._utils", "_rebuild_parameter_with_state", G_REBUILD_PARAMETER_STATE, 0},
    {"torch", "Size", G_TORCH_SIZE, 0},
    {"torch._tensor", "_rebuild_from_type_v2", G_REBUILD_FROM_TYPE_V2, 0},
    {"torch", "Tensor", G_TYPE_MARKER, 0},
    {"torch._tensor", "Tensor", G_TYPE_MARKER, 0},
    {"torch.nn.parameter", "Parameter", G_TYPE_MARKER, 0},
    {"torch", "FloatStorage", G_STORAGE_TYPE, SF_F32},
    {"torch", "DoubleStorage", G_STORAGE_TYPE, SF_F64},
    {"torch", "HalfStorage", G_STORAGE_TYPE, SF_F16},
    {"torch", "BFloat16Storage", G_STORAGE_TYPE, SF_BF16},
    {"torch", "LongStorage", G_STORAGE_TYPE, SF_I64},
    {"torch", "IntStorage", G_STORAGE_TYPE, SF_I32},
    {"torch", "ByteStorage", G_STORAGE_TYPE, SF_U8},
    {"torch", "BoolStorage", G_STORAGE_TYPE, SF_BOOL},
    {"torch", "UntypedStorage", G_STORAGE_TYPE, SF_U8},
};
#define N_KNOWN ((int)(sizeof known_globals / sizeof *known_globals))

struct sf_pickle {
  sf_py **objs;
  size_t nobjs, capobjs;
  sf_py **storages;
  int nstorages, capstorages;
  int *shash; /* storage key -> index + 1 (open addressing; checkpoints hold thousands of storages) */
  int shcap;
  /* parser state */
  const unsigned char *d;
  size_t n, pos;
  const char *what;
  sf_py **stack;
  size_t sp, capstack;
  size_t *marks;
  size_t nmarks, capmarks;
  sf_py **memo;
  size_t nmemo, memo_count;
};

#define MEMO_MAX (1u << 24)

static int perr(sf_pickle *p, const char *fmt, const char *arg) {
  char msg[1024];
  snprintf(msg, sizeof msg, fmt, arg);
  return sf_error("%s: data.pkl: %s (at byte %zu)", p->what, msg, p->pos);
}

static sf_py *newobj(sf_pickle *p, sf_py_type t) {
  if (p->nobjs == p->capobjs) {
    size_t cap = p->capobjs ? p->capobjs * 2 : 256;
    sf_py **o = realloc(p->objs, cap * sizeof *o);
    if (!o) return NULL;
    p->objs = o;
    p->capobjs = cap;
  }
  sf_py *o = calloc(1, sizeof *o);
  if (!o) return NULL;
  o->type = t;
  p->objs[p->nobjs++] = o;
  return o;
}

static int additem(sf_py *c, sf_py *v) {
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 8;
    sf_py **it = realloc(c->items, cap * sizeof *it);
    if (!it) return -1;
    c->items = it;
    c->cap = cap;
  }
  c->items[c->n++] = v;
  return 0;
}

void sf_pickle_free(sf_pickle *p) {
  if (!p) return;
  for (size_t i = 0; i < p->nobjs; i++) {
    free(p->objs[i]->s);
    free(p->objs[i]->items);
    free(p->objs[i]);
  }
  free(p->objs);
  free(p->storages);
  free(p->shash);
  free(p->stack);
  free(p->marks);
  free(p->memo);
  free(p);
}

int sf_pickle_storage_count(const sf_pickle *p) { return p->nstorages; }
sf_py *sf_pickle_storage(const sf_pickle *p, int id) { return id >= 0 && id < p->nstorages ? p->storages[id] : NULL; }

static int push(sf_pickle *p, sf_py *o) {
  if (!o) return sf_error("%s: data.pkl: out of memory", p->what);
  if (p->sp == p->capstack) {
    size_t cap = p->capstack ? p->capstack * 2 : 64;
    sf_py **s = realloc(p->stack, cap * sizeof *s);
    if (!s) return sf_error("%s: data.pkl: out of memory", p->what);
    p->stack = s;
    p->capstack = cap;
  }
  p->stack[p->sp++] = o;
  return 0;
}

static size_t stack_floor(sf_pickle *p) { return p->nmarks ? p->marks[p->nmarks - 1] : 0; }

static sf_py *pop(sf_pickle *p) {
  if (p->sp <= stack_floor(p)) {
    perr(p, "%sstack underflow (corrupt pickle)", "");
    return NULL;
  }
  return p->stack[--p->sp];
}

static sf_py *top(sf_pickle *p) {
  if (p->sp <= stack_floor(p)) {
    perr(p, "%sstack underflow (corrupt pickle)", "");
    return NULL;
  }
  return p->stack[p->sp - 1];
}

/* pops everything above the last MARK into a new container of type t */
static sf_py *pop_mark(sf_pickle *p, sf_py_type t) {
  if (!p->nmarks) {
    perr(p, "%sMARK expected but missing (corrupt pickle)", "");
    return NULL;
  }
  size_t m = p->marks[--p->nmarks];
  sf_py *c = newobj(p, t);
  if (!c) return NULL;
  for (size_t i = m; i < p->sp; i++)
    if (additem(c, p->stack[i])) return NULL;
  p->sp = m;
  return c;
}

static int need(sf_pickle *p, size_t k) {
  if (p->n - p->pos < k) return perr(p, "%struncated pickle (opcode argument runs past the end)", "");
  return 0;
}

static uint64_t rd_le(const unsigned char *b, int k) {
  uint64_t v = 0;
  for (int i = 0; i < k; i++) v |= (uint64_t)b[i] << (8 * i);
  return v;
}

/* a text line (protocol 0 arguments), NUL-terminated copy into buf */
static int rd_line(sf_pickle *p, char *buf, size_t cap) {
  const unsigned char *nl = memchr(p->d + p->pos, '\n', p->n - p->pos);
  if (!nl) return perr(p, "%struncated pickle (text argument without newline)", "");
  size_t len = (size_t)(nl - (p->d + p->pos));
  if (len >= cap) return perr(p, "%stext argument too long", "");
  memcpy(buf, p->d + p->pos, len);
  buf[len] = 0;
  p->pos += len + 1;
  return 0;
}

static sf_py *mkint(sf_pickle *p, int64_t v) {
  sf_py *o = newobj(p, SF_PY_INT);
  if (o) o->i = v;
  return o;
}

static sf_py *mkstr(sf_pickle *p, sf_py_type t, const unsigned char *s, size_t len) {
  sf_py *o = newobj(p, t);
  if (!o) return NULL;
  o->s = malloc(len + 1);
  if (!o->s) return NULL;
  memcpy(o->s, s, len);
  o->s[len] = 0;
  o->len = len;
  return o;
}

/* little-endian two's complement of k bytes; more than 8 significant bytes is an error */
static int long_le(sf_pickle *p, const unsigned char *b, uint64_t k, int64_t *out) {
  if (k == 0) {
    *out = 0;
    return 0;
  }
  int neg = (b[k - 1] & 0x80) != 0;
  for (uint64_t i = 8; i < k; i++)
    if (b[i] != (neg ? 0xff : 0x00)) return perr(p, "%sinteger wider than 64 bits", "");
  uint64_t v = 0;
  for (uint64_t i = 0; i < k && i < 8; i++) v |= (uint64_t)b[i] << (8 * i);
  if (k < 8 && neg) v |= ~UINT64_C(0) << (8 * k);
  if (k >= 8 && ((v >> 63) != (uint64_t)neg)) return perr(p, "%sinteger wider than 64 bits", "");
  *out = (int64_t)v;
  return 0;
}

static int global(sf_pickle *p, const char *mod, const char *name) {
  for (int i = 0; i < N_KNOWN; i++)
    if (!strcmp(mod, known_globals[i].mod) && !strcmp(name, known_globals[i].name)) {
      sf_py *g = newobj(p, SF_PY_GLOBAL);
      if (!g) return push(p, NULL);
      g->i = i;
      return push(p, g);
    }
  char full[400];
  snprintf(full, sizeof full, "%s.%s", mod, name);
  if (!strcmp(mod, "torch") && strlen(name) > 7 && !strcmp(name + strlen(name) - 7, "Storage"))
    return perr(p, "tensors stored as '%s' have a dtype sfwb does not hold (f32 bf16 f16 f64 i64 i32 u8 bool)", full);
  return perr(p, "unsupported pickle global '%s' (sfwb reads tensors, dicts, lists, tuples, numbers, strings and None only; it never runs code)", full);
}

static int memo_put(sf_pickle *p, uint64_t idx) {
  sf_py *o = top(p);
  if (!o) return -1;
  if (idx >= MEMO_MAX) return perr(p, "%smemo index too large", "");
  if (idx >= p->nmemo) {
    size_t n = p->nmemo ? p->nmemo : 64;
    while (n <= idx) n *= 2;
    sf_py **m = realloc(p->memo, n * sizeof *m);
    if (!m) return sf_error("%s: data.pkl: out of memory", p->what);
    memset(m + p->nmemo, 0, (n - p->nmemo) * sizeof *m);
    p->memo = m;
    p->nmemo = n;
  }
  if (!p->memo[idx]) p->memo_count++;
  p->memo[idx] = o;
  return 0;
}

static int memo_get(sf_pickle *p, uint64_t idx) {
  if (idx >= p->nmemo || !p->memo[idx]) return perr(p, "%smemo reference to an unknown slot (corrupt pickle)", "");
  return push(p, p->memo[idx]);
}

static int as_int(sf_py *o, int64_t *v) {
  if (!o || (o->type != SF_PY_INT && o->type != SF_PY_BOOL)) return -1;
  *v = o->i;
  return 0;
}

static sf_py *persistent_load(sf_pickle *p, sf_py *pid) {
  if (pid->type != SF_PY_TUPLE || pid->n < 5 || pid->items[0]->type != SF_PY_STR || strcmp(pid->items[0]->s, "storage")) {
    perr(p, "%sunsupported persistent id (expected ('storage', type, key, location, numel))", "");
    return NULL;
  }
  sf_py *ty = pid->items[1], *key = pid->items[2];
  int64_t numel;
  if (ty->type != SF_PY_GLOBAL || known_globals[ty->i].kind != G_STORAGE_TYPE) {
    perr(p, "%spersistent id names no known storage type", "");
    return NULL;
  }
  if (key->type != SF_PY_STR && key->type != SF_PY_INT) {
    perr(p, "%spersistent id has a key that is not a string", "");
    return NULL;
  }
  if (as_int(pid->items[4], &numel) || numel < 0) {
    perr(p, "%spersistent id has an invalid element count", "");
    return NULL;
  }
  char kbuf[32];
  const char *k = key->s;
  if (key->type == SF_PY_INT) {
    snprintf(kbuf, sizeof kbuf, "%lld", (long long)key->i);
    k = kbuf;
  }
  sf_dtype dt = (sf_dtype)known_globals[ty->i].dtype;
  uint64_t h = 1469598103934665603ull;
  for (const char *c = k; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ull;
  if (p->shcap) {
    for (uint64_t j = h & (p->shcap - 1); p->shash[j]; j = (j + 1) & (p->shcap - 1)) {
      sf_py *old = p->storages[p->shash[j] - 1];
      if (strcmp(old->s, k)) continue;
      if (old->dtype != dt) {
        perr(p, "storage '%s' is used with two different dtypes", k);
        return NULL;
      }
      return old;
    }
  }
  sf_py *s = mkstr(p, SF_PY_STORAGE, (const unsigned char *)k, strlen(k));
  if (!s) return NULL;
  s->dtype = dt;
  s->numel = numel;
  if (p->nstorages == p->capstorages) {
    int cap = p->capstorages ? p->capstorages * 2 : 64;
    sf_py **st = realloc(p->storages, cap * sizeof *st);
    if (!st) return NULL;
    p->storages = st;
    p->capstorages = cap;
  }
  s->storage_id = p->nstorages;
  p->storages[p->nstorages++] = s;
  if (p->nstorages * 2 > p->shcap) { /* rebuild at half load */
    int cap = p->shcap ? p->shcap * 2 : 128;
    while (cap < p->nstorages * 2) cap *= 2;
    int *t = calloc(cap, sizeof *t);
    if (!t) return NULL;
    free(p->shash);
    p->shash = t;
    p->shcap = cap;
    for (int i = 0; i < p->nstorages; i++) {
      uint64_t hh = 1469598103934665603ull;
      for (const char *c = p->storages[i]->s; *c; c++) hh = (hh ^ (unsigned char)*c) * 1099511628211ull;
      uint64_t j = hh & (cap - 1);
      while (t[j]) j = (j + 1) & (cap - 1);
      t[j] = i + 1;
    }
  } else {
    uint64_t j = h & (p->shcap - 1);
    while (p->shash[j]) j = (j + 1) & (p->shcap - 1);
    p->shash[j] = p->nstorages;
  }
  return s;
}

static sf_py *rebuild_tensor(sf_pickle *p, sf_py *args, int rg_index) {
  if (args->n < 4) {
    perr(p, "%s_rebuild_tensor called with too few arguments", "");
    return NULL;
  }
  sf_py *st = args->items[0], *sz = args->items[2], *sd = args->items[3];
  int64_t off;
  if (st->type != SF_PY_STORAGE) {
    perr(p, "%s_rebuild_tensor: first argument is not a storage", "");
    return NULL;
  }
  if (as_int(args->items[1], &off) || off < 0 || (sz->type != SF_PY_TUPLE && sz->type != SF_PY_LIST) ||
      (sd->type != SF_PY_TUPLE && sd->type != SF_PY_LIST) || sz->n != sd->n) {
    perr(p, "%s_rebuild_tensor: offset/size/stride arguments are malformed", "");
    return NULL;
  }
  if (sz->n > SF_MAX_DIMS) {
    perr(p, "%stensor has more dims than sfwb supports (8)", "");
    return NULL;
  }
  sf_py *t = newobj(p, SF_PY_TENSOR);
  if (!t) return NULL;
  t->storage = st;
  t->offset = off;
  t->ndim = (int)sz->n;
  t->dtype = st->dtype;
  int empty = 0;
  __int128 extent = off;
  for (int i = 0; i < t->ndim; i++) {
    if (as_int(sz->items[i], &t->shape[i]) || as_int(sd->items[i], &t->stride[i]) || t->shape[i] < 0 ||
        t->stride[i] < 0 || t->shape[i] > (INT64_C(1) << 48) || t->stride[i] > (INT64_C(1) << 48)) {
      perr(p, "%stensor size/stride entry is not a valid integer", "");
      return NULL;
    }
    if (t->shape[i] == 0) empty = 1;
    else extent += (__int128)(t->shape[i] - 1) * t->stride[i];
  }
  if (!empty && extent >= st->numel) {
    char k[300];
    snprintf(k, sizeof k, "tensor view reaches element %lld of storage '%s' which holds %lld", (long long)extent, st->s,
             (long long)st->numel);
    perr(p, "%s", k);
    return NULL;
  }
  if (rg_index >= 0 && (size_t)rg_index < args->n && args->items[rg_index]->type == SF_PY_BOOL)
    t->requires_grad = args->items[rg_index]->i != 0;
  return t;
}

static sf_py *apply(sf_pickle *p, sf_py *fn, sf_py *args);

static sf_py *apply(sf_pickle *p, sf_py *fn, sf_py *args) {
  if (fn->type != SF_PY_GLOBAL) {
    perr(p, "%sREDUCE of something that is not a known global", "");
    return NULL;
  }
  if (args->type != SF_PY_TUPLE) {
    perr(p, "%sREDUCE arguments are not a tuple", "");
    return NULL;
  }
  switch (known_globals[fn->i].kind) {
  case G_ORDERED_DICT: {
    sf_py *d = newobj(p, SF_PY_DICT);
    if (!d) return NULL;
    if (args->n == 1 && (args->items[0]->type == SF_PY_LIST || args->items[0]->type == SF_PY_TUPLE)) {
      sf_py *l = args->items[0];
      for (size_t i = 0; i < l->n; i++) {
        sf_py *kv = l->items[i];
        if ((kv->type != SF_PY_TUPLE && kv->type != SF_PY_LIST) || kv->n != 2) {
          perr(p, "%sOrderedDict item is not a (key, value) pair", "");
          return NULL;
        }
        if (additem(d, kv->items[0]) || additem(d, kv->items[1])) return NULL;
      }
    } else if (args->n != 0) {
      perr(p, "%sOrderedDict called with unexpected arguments", "");
      return NULL;
    }
    return d;
  }
  case G_REBUILD_TENSOR_V2: return rebuild_tensor(p, args, 4);
  case G_REBUILD_TENSOR: return rebuild_tensor(p, args, -1);
  case G_REBUILD_PARAMETER:
  case G_REBUILD_PARAMETER_STATE: {
    if (args->n < 2 || args->items[0]->type != SF_PY_TENSOR) {
      perr(p, "%s_rebuild_parameter: first argument is not a tensor", "");
      return NULL;
    }
    sf_py *t = args->items[0];
    if (args->items[1]->type == SF_PY_BOOL) t->requires_grad = args->items[1]->i != 0;
    return t;
  }
  case G_TORCH_SIZE: {
    if (args->n != 1 || (args->items[0]->type != SF_PY_TUPLE && args->items[0]->type != SF_PY_LIST)) {
      perr(p, "%storch.Size expects one tuple", "");
      return NULL;
    }
    sf_py *t = newobj(p, SF_PY_TUPLE);
    if (!t) return NULL;
    for (size_t i = 0; i < args->items[0]->n; i++)
      if (additem(t, args->items[0]->items[i])) return NULL;
    return t;
  }
  case G_REBUILD_FROM_TYPE_V2: {
    /* (func, type, args, state): the Tensor/Parameter type and its python state are ignored */
    if (args->n < 3 || args->items[1]->type != SF_PY_GLOBAL || known_globals[args->items[1]->i].kind != G_TYPE_MARKER) {
      perr(p, "%s_rebuild_from_type_v2 of an unsupported tensor subclass", "");
      return NULL;
    }
    return apply(p, args->items[0], args->items[2]);
  }
  default: {
    char full[300];
    snprintf(full, sizeof full, "%s.%s", known_globals[fn->i].mod, known_globals[fn->i].name);
    perr(p, "calling '%s' is not supported", full);
    return NULL;
  }
  }
}

static int setitems(sf_pickle *p, size_t from) {
  /* stack: ... dict MARK k v k v ; `from` is the first key index */
  if (from == 0 || (p->sp - from) % 2) return perr(p, "%sSETITEMS with an odd number of stack items", "");
  sf_py *d = p->stack[from - 1];
  if (d->type != SF_PY_DICT) return perr(p, "%sSETITEM(S) on something that is not a dict", "");
  for (size_t i = from; i < p->sp; i++)
    if (additem(d, p->stack[i])) return sf_error("%s: data.pkl: out of memory", p->what);
  p->sp = from;
  return 0;
}

static int appends(sf_pickle *p, size_t from) {
  if (from == 0) return perr(p, "%sAPPEND(S) without a list", "");
  sf_py *l = p->stack[from - 1];
  if (l->type != SF_PY_LIST) return perr(p, "%sAPPEND(S) on something that is not a list", "");
  for (size_t i = from; i < p->sp; i++)
    if (additem(l, p->stack[i])) return sf_error("%s: data.pkl: out of memory", p->what);
  p->sp = from;
  return 0;
}

static int take_mark(sf_pickle *p, size_t *m) {
  if (!p->nmarks) return perr(p, "%sMARK expected but missing (corrupt pickle)", "");
  *m = p->marks[--p->nmarks];
  return 0;
}

static int run(sf_pickle *p, sf_py **root) {
  char line[512];
  while (p->pos < p->n) {
    if (sf_interrupted()) return sf_error("%s: interrupted", p->what);
    unsigned char op = p->d[p->pos++];
    const unsigned char *a = p->d + p->pos;
    int64_t iv = 0;
    uint64_t len;
    sf_py *o, *o2;
    switch (op) {
    case 0x80: /* PROTO */
      if (need(p, 1)) return -1;
      if (a[0] > 5) return perr(p, "%sunknown pickle protocol", "");
      p->pos += 1;
      break;
    case 0x95: /* FRAME */
      if (need(p, 8)) return -1;
      p->pos += 8;
      break;
    case '.': /* STOP */
      if (p->sp != 1 || p->nmarks) return perr(p, "%sSTOP with an unbalanced stack (corrupt pickle)", "");
      *root = p->stack[0];
      return 0;
    case '(':
      if (p->nmarks == p->capmarks) {
        size_t cap = p->capmarks ? p->capmarks * 2 : 32;
        size_t *m = realloc(p->marks, cap * sizeof *m);
        if (!m) return sf_error("%s: data.pkl: out of memory", p->what);
        p->marks = m;
        p->capmarks = cap;
      }
      p->marks[p->nmarks++] = p->sp;
      break;
    case '0': if (!pop(p)) return -1; break;
    case '1': {
      size_t m = 0;
      if (take_mark(p, &m)) return -1;
      p->sp = m;
      break;
    }
    case '2': if (!(o = top(p)) || push(p, o)) return -1; break;
    case 'N': if (push(p, newobj(p, SF_PY_NONE))) return -1; break;
    case 0x88: case 0x89:
      if (!(o = newobj(p, SF_PY_BOOL))) return push(p, NULL);
      o->i = op == 0x88;
      if (push(p, o)) return -1;
      break;
    case 'J': if (need(p, 4)) return -1; p->pos += 4; if (push(p, mkint(p, (int32_t)rd_le(a, 4)))) return -1; break;
    case 'K': if (need(p, 1)) return -1; p->pos += 1; if (push(p, mkint(p, a[0]))) return -1; break;
    case 'M': if (need(p, 2)) return -1; p->pos += 2; if (push(p, mkint(p, (int64_t)rd_le(a, 2)))) return -1; break;
    case 0x8a: case 0x8b: { /* LONG1, LONG4 */
      int k = op == 0x8a ? 1 : 4;
      if (need(p, k)) return -1;
      len = rd_le(a, k);
      p->pos += k;
      if (need(p, len)) return -1;
      if (long_le(p, p->d + p->pos, len, &iv)) return -1;
      p->pos += len;
      if (push(p, mkint(p, iv))) return -1;
      break;
    }
    case 'I': case 'L': { /* text INT / LONG */
      if (rd_line(p, line, sizeof line)) return -1;
      size_t l = strlen(line);
      if (op == 'L' && l && line[l - 1] == 'L') line[--l] = 0;
      if (op == 'I' && (!strcmp(line, "00") || !strcmp(line, "01"))) {
        if (!(o = newobj(p, SF_PY_BOOL))) return push(p, NULL);
        o->i = line[1] == '1';
        if (push(p, o)) return -1;
        break;
      }
      char *end;
      long long v = strtoll(line, &end, 10);
      if (!l || *end) return perr(p, "%sbad text integer", "");
      if (push(p, mkint(p, v))) return -1;
      break;
    }
    case 'F': {
      if (rd_line(p, line, sizeof line)) return -1;
      char *end;
      double v = strtod(line, &end);
      if (!line[0] || *end) return perr(p, "%sbad text float", "");
      if (!(o = newobj(p, SF_PY_FLOAT))) return push(p, NULL);
      o->f = v;
      if (push(p, o)) return -1;
      break;
    }
    case 'G': { /* BINFLOAT, big-endian */
      if (need(p, 8)) return -1;
      uint64_t u = 0;
      for (int i = 0; i < 8; i++) u = (u << 8) | a[i];
      p->pos += 8;
      if (!(o = newobj(p, SF_PY_FLOAT))) return push(p, NULL);
      memcpy(&o->f, &u, 8);
      if (push(p, o)) return -1;
      break;
    }
    case 'X': case 0x8c: case 0x8d: case 'B': case 'C': case 0x8e: case 'T': case 'U': case 0x96: {
      int k = (op == 'X' || op == 'B' || op == 'T') ? 4 : (op == 0x8d || op == 0x8e || op == 0x96) ? 8 : 1;
      if (need(p, k)) return -1;
      len = rd_le(a, k);
      p->pos += k;
      if (need(p, len)) return -1;
      sf_py_type t = (op == 'X' || op == 0x8c || op == 0x8d || op == 'T' || op == 'U') ? SF_PY_STR : SF_PY_BYTES;
      o = mkstr(p, t, p->d + p->pos, len);
      p->pos += len;
      if (push(p, o)) return -1;
      break;
    }
    case ')': if (push(p, newobj(p, SF_PY_TUPLE))) return -1; break;
    case ']': if (push(p, newobj(p, SF_PY_LIST))) return -1; break;
    case '}': if (push(p, newobj(p, SF_PY_DICT))) return -1; break;
    case 't': if (push(p, pop_mark(p, SF_PY_TUPLE))) return -1; break;
    case 'l': if (push(p, pop_mark(p, SF_PY_LIST))) return -1; break;
    case 'd': {
      o = pop_mark(p, SF_PY_DICT);
      if (!o) return -1;
      if (o->n % 2) return perr(p, "%sDICT with an odd number of items", "");
      if (push(p, o)) return -1;
      break;
    }
    case 0x85: case 0x86: case 0x87: {
      size_t k = op - 0x84;
      if (p->sp < stack_floor(p) + k) return perr(p, "%sstack underflow (corrupt pickle)", "");
      o = newobj(p, SF_PY_TUPLE);
      if (!o) return push(p, NULL);
      for (size_t i = p->sp - k; i < p->sp; i++)
        if (additem(o, p->stack[i])) return sf_error("%s: data.pkl: out of memory", p->what);
      p->sp -= k;
      if (push(p, o)) return -1;
      break;
    }
    case 'a':
      if (p->sp < stack_floor(p) + 2) return perr(p, "%sstack underflow (corrupt pickle)", "");
      if (appends(p, p->sp - 1)) return -1;
      break;
    case 'e': {
      size_t m = 0;
      if (take_mark(p, &m) || appends(p, m)) return -1;
      break;
    }
    case 's':
      if (p->sp < stack_floor(p) + 3) return perr(p, "%sstack underflow (corrupt pickle)", "");
      if (setitems(p, p->sp - 2)) return -1;
      break;
    case 'u': {
      size_t m = 0;
      if (take_mark(p, &m) || setitems(p, m)) return -1;
      break;
    }
    case 'q': if (need(p, 1)) return -1; p->pos += 1; if (memo_put(p, a[0])) return -1; break;
    case 'r': if (need(p, 4)) return -1; p->pos += 4; if (memo_put(p, rd_le(a, 4))) return -1; break;
    case 0x94: if (memo_put(p, p->memo_count)) return -1; break;
    case 'h': if (need(p, 1)) return -1; p->pos += 1; if (memo_get(p, a[0])) return -1; break;
    case 'j': if (need(p, 4)) return -1; p->pos += 4; if (memo_get(p, rd_le(a, 4))) return -1; break;
    case 'p': case 'g': {
      if (rd_line(p, line, sizeof line)) return -1;
      char *end;
      unsigned long long v = strtoull(line, &end, 10);
      if (!line[0] || *end) return perr(p, "%sbad memo index", "");
      if ((op == 'p' ? memo_put(p, v) : memo_get(p, v))) return -1;
      break;
    }
    case 'c': {
      char mod[256], name[256];
      if (rd_line(p, mod, sizeof mod) || rd_line(p, name, sizeof name)) return -1;
      if (global(p, mod, name)) return -1;
      break;
    }
    case 0x93: { /* STACK_GLOBAL */
      o2 = pop(p);
      o = o2 ? pop(p) : NULL;
      if (!o) return -1;
      if (o->type != SF_PY_STR || o2->type != SF_PY_STR) return perr(p, "%sSTACK_GLOBAL needs two strings", "");
      if (global(p, o->s, o2->s)) return -1;
      break;
    }
    case 'Q': { /* BINPERSID */
      if (!(o = pop(p))) return -1;
      if (!(o = persistent_load(p, o))) return -1;
      if (push(p, o)) return -1;
      break;
    }
    case 'R': { /* REDUCE */
      o2 = pop(p);
      o = o2 ? pop(p) : NULL;
      if (!o) return -1;
      if (!(o = apply(p, o, o2))) return -1;
      if (push(p, o)) return -1;
      break;
    }
    case 'b': { /* BUILD: OrderedDict._metadata and tensor python state are dropped */
      o2 = pop(p);
      o = o2 ? top(p) : NULL;
      if (!o) return -1;
      if (o->type != SF_PY_DICT && o->type != SF_PY_TENSOR)
        return perr(p, "%sBUILD (setting object state) on something that is not a dict or tensor", "");
      break;
    }
    default: {
      char name[16];
      snprintf(name, sizeof name, "0x%02x", op);
      return perr(p, "unsupported or invalid pickle opcode %s (objects other than plain data are refused)", name);
    }
    }
  }
  return perr(p, "%struncated pickle (no STOP opcode)", "");
}

sf_pickle *sf_pickle_load(const unsigned char *data, size_t n, const char *what, sf_py **root) {
  sf_pickle *p = calloc(1, sizeof *p);
  if (!p) return sf_error("%s: out of memory", what), NULL;
  p->d = data;
  p->n = n;
  p->what = what;
  *root = NULL;
  if (run(p, root)) {
    sf_pickle_free(p);
    return NULL;
  }
  free(p->stack);
  free(p->marks);
  free(p->memo);
  p->stack = NULL;
  p->marks = NULL;
  p->memo = NULL;
  return p;
}

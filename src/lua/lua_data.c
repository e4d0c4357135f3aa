/* lua_data.c — sfwb._data: LMDB environments (read rows as tensors/strings, write rows), sorted
 * directory listings and torch's randperm (mt19937, as torch.Generator.manual_seed) for
 * lua/sfwb/data.lua, which builds the Self-Forcing datasets and the distributed loader. */
#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <lmdb.h>
#include <lua.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "ops/ops.h"
#include "io/image.h"
#include "io/iobuf.h"
#include "lua/lua_tensor.h"
#include "lua/lua_tensor_impl.h"

#define LMDB_MT "sfwb.LMDB"

typedef struct {
  MDB_env *env;
  MDB_txn *wtxn; /* open write transaction (writers only) */
  int write;
  char path[1024];
} lmdb_ud;


static lmdb_ud *check_env(lua_State *L) {
  lmdb_ud *u = luaL_checkudata(L, 1, LMDB_MT);
  if (!u->env) luaL_error(L, "LMDB environment %s is closed", u->path);
  return u;
}

static void env_close(lmdb_ud *u, int commit, int *rc) {
  if (u->wtxn) {
    int r = commit ? mdb_txn_commit(u->wtxn) : (mdb_txn_abort(u->wtxn), 0);
    if (r && rc) *rc = r;
    u->wtxn = NULL;
  }
  if (u->env) mdb_env_close(u->env);
  u->env = NULL;
}

static int l_gc(lua_State *L) {
  lmdb_ud *u = luaL_checkudata(L, 1, LMDB_MT);
  env_close(u, 1, NULL); /* a forgotten close still keeps the rows written */
  return 0;
}

/* _data.lmdb_open(path, {write=false, map_size=2^40}) */
static int l_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int write = 0;
  lua_Integer map_size = (lua_Integer)1 << 40;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "write");
    write = lua_toboolean(L, -1);
    lua_getfield(L, 2, "map_size");
    if (!lua_isnil(L, -1)) map_size = luaL_checkinteger(L, -1);
    lua_pop(L, 2);
  }
  lmdb_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  memset(u, 0, sizeof *u);
  luaL_setmetatable(L, LMDB_MT);
  snprintf(u->path, sizeof u->path, "%s", path);
  u->write = write;
  if (write && mkdir(path, 0777) != 0 && errno != EEXIST) return sf_lua_errorf(L, "%s: cannot create folder: %s", path, strerror(errno));
  int rc = mdb_env_create(&u->env);
  if (!rc) rc = mdb_env_set_mapsize(u->env, (size_t)map_size);
  if (!rc) rc = mdb_env_open(u->env, path, write ? 0 : (MDB_RDONLY | MDB_NOLOCK | MDB_NORDAHEAD), 0664);
  if (rc) {
    if (u->env) mdb_env_close(u->env);
    u->env = NULL;
    return sf_lua_errorf(L, "%s: cannot open LMDB: %s", path, mdb_strerror(rc));
  }
  return 1;
}

/* runs f on the value of key inside a read transaction; pushes what f pushes (nil when absent) */
static int with_value(lua_State *L, lmdb_ud *u, const char *key, int (*f)(lua_State *, lmdb_ud *, MDB_val *, const char *)) {
  MDB_txn *txn = u->wtxn;
  int own = 0, rc;
  if (!txn) {
    rc = mdb_txn_begin(u->env, NULL, MDB_RDONLY, &txn);
    if (rc) return sf_lua_errorf(L, "%s: LMDB read failed: %s", u->path, mdb_strerror(rc));
    own = 1;
  }
  MDB_dbi dbi;
  rc = mdb_dbi_open(txn, NULL, 0, &dbi);
  MDB_val k = {strlen(key), (void *)key}, v;
  if (!rc) rc = mdb_get(txn, dbi, &k, &v);
  if (rc == MDB_NOTFOUND) {
    if (own) mdb_txn_abort(txn);
    lua_pushnil(L);
    return 1;
  }
  if (rc) {
    if (own) mdb_txn_abort(txn);
    return sf_lua_errorf(L, "%s: LMDB read of '%s' failed: %s", u->path, key, mdb_strerror(rc));
  }
  /* copy out before the transaction ends; f must not raise while txn is ours */
  int n = f(L, u, &v, key);
  if (own) mdb_txn_abort(txn);
  if (n < 0) return sf_lua_raise(L);
  return n;
}

static int push_string(lua_State *L, lmdb_ud *u, MDB_val *v, const char *key) {
  (void)u;
  (void)key;
  lua_pushlstring(L, v->mv_data, v->mv_size);
  return 1;
}

static int l_get(lua_State *L) {
  lmdb_ud *u = check_env(L);
  return with_value(L, u, luaL_checkstring(L, 2), push_string);
}

/* row tensor parameters for push_tensor (set by l_tensor before with_value) */
static struct {
  sf_dtype dt;
  int ndim;
  int64_t shape[SF_MAX_DIMS];
  sf_tensor *out;
} g_row;

static int make_tensor(lua_State *L, lmdb_ud *u, MDB_val *v, const char *key) {
  (void)L;
  int64_t numel = 1;
  for (int i = 0; i < g_row.ndim; i++) numel *= g_row.shape[i];
  size_t want = (size_t)numel * sf_dtype_size(g_row.dt);
  if (v->mv_size != want) {
    sf_error("%s: row '%s' holds %zu bytes but %s of %lld elements needs %zu", u->path, key, v->mv_size,
             sf_dtype_name(g_row.dt), (long long)numel, want);
    return -1;
  }
  g_row.out = sf_tensor_new(g_row.dt, sf_cpu(), g_row.ndim, g_row.shape);
  if (!g_row.out) return -1;
  if (want) memcpy(sf_data_ptr(g_row.out), v->mv_data, want);
  lua_pushboolean(L, 1);
  return 1;
}

/* env:tensor(key, dtype, shape) -> tensor (a copy of the row bytes) or nil when the key is absent */
static int l_tensor(lua_State *L) {
  lmdb_ud *u = check_env(L);
  const char *key = luaL_checkstring(L, 2);
  const char *dt = luaL_checkstring(L, 3);
  sf_dtype d;
  if (sf_dtype_from_name(dt, &d)) return sf_lua_raise(L);
  int64_t shape[SF_MAX_DIMS];
  int nd = sf_lua_check_shape(L, 4, shape);
  g_row.dt = d;
  g_row.ndim = nd;
  memcpy(g_row.shape, shape, sizeof shape);
  g_row.out = NULL;
  with_value(L, u, key, make_tensor);
  if (lua_isnil(L, -1)) return 1;
  lua_pop(L, 1);
  sf_lua_push_tensor(L, g_row.out);
  return 1;
}

static int l_put(lua_State *L) {
  lmdb_ud *u = check_env(L);
  if (!u->write) return sf_lua_errorf(L, "%s: opened read-only", u->path);
  size_t kl, vl;
  const char *k = luaL_checklstring(L, 2, &kl);
  const void *vp;
  sf_tensor *c = NULL;
  sf_tensor *t = sf_lua_to_tensor(L, 3);
  if (t) {
    c = sf_io_cpu_contiguous(t);
    if (!c) return sf_lua_raise(L);
    vp = sf_data_ptr(c);
    vl = (size_t)sf_numel(c) * sf_dtype_size(c->dtype);
  } else {
    vp = luaL_checklstring(L, 3, &vl);
  }
  int rc = 0;
  if (!u->wtxn) rc = mdb_txn_begin(u->env, NULL, 0, &u->wtxn);
  MDB_dbi dbi;
  if (!rc) rc = mdb_dbi_open(u->wtxn, NULL, 0, &dbi);
  MDB_val mk = {kl, (void *)k}, mv = {vl, (void *)vp};
  if (!rc) rc = mdb_put(u->wtxn, dbi, &mk, &mv, 0);
  sf_release(c);
  if (rc) return sf_lua_errorf(L, "%s: LMDB write of '%s' failed: %s", u->path, k, mdb_strerror(rc));
  return 0;
}

static int l_commit(lua_State *L) {
  lmdb_ud *u = check_env(L);
  if (u->wtxn) {
    int rc = mdb_txn_commit(u->wtxn);
    u->wtxn = NULL;
    if (rc) return sf_lua_errorf(L, "%s: LMDB commit failed: %s", u->path, mdb_strerror(rc));
  }
  return 0;
}

static int l_close(lua_State *L) {
  lmdb_ud *u = luaL_checkudata(L, 1, LMDB_MT);
  int rc = 0;
  env_close(u, 1, &rc);
  if (rc) return sf_lua_errorf(L, "%s: LMDB commit failed: %s", u->path, mdb_strerror(rc));
  return 0;
}

static int l_path(lua_State *L) {
  lmdb_ud *u = luaL_checkudata(L, 1, LMDB_MT);
  lua_pushstring(L, u->path);
  return 1;
}

/* _data.listdir(path) -> sorted (byte order) names, without . and .. */
static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static int l_listdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  DIR *d = opendir(path);
  if (!d) return sf_lua_errorf(L, "%s: cannot list folder: %s", path, strerror(errno));
  int n = 0, cap = 64;
  char **names = malloc(cap * sizeof *names);
  struct dirent *de;
  while (names && (de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    if (n == cap) {
      char **nn = realloc(names, (cap *= 2) * sizeof *nn);
      if (!nn) break;
      names = nn;
    }
    names[n++] = strdup(de->d_name);
  }
  closedir(d);
  if (!names) return luaL_error(L, "out of memory");
  qsort(names, n, sizeof *names, name_cmp);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushstring(L, names[i]);
    lua_rawseti(L, -2, i + 1);
    free(names[i]);
  }
  free(names);
  return 1;
}

static int l_isdir(lua_State *L) {
  struct stat st;
  lua_pushboolean(L, stat(luaL_checkstring(L, 1), &st) == 0 && S_ISDIR(st.st_mode));
  return 1;
}

/* ---- torch.randperm(n, generator=torch.Generator().manual_seed(seed)) on the CPU ---- */

typedef struct {
  uint32_t s[624];
  int i;
} mt19937;

static void mt_seed(mt19937 *m, uint32_t seed) {
  m->s[0] = seed;
  for (int j = 1; j < 624; j++) m->s[j] = 1812433253u * (m->s[j - 1] ^ (m->s[j - 1] >> 30)) + (uint32_t)j;
  m->i = 624;
}

static uint32_t mt_next(mt19937 *m) {
  if (m->i >= 624) {
    for (int j = 0; j < 624; j++) {
      uint32_t y = (m->s[j] & 0x80000000u) | (m->s[(j + 1) % 624] & 0x7fffffffu);
      m->s[j] = m->s[(j + 397) % 624] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
    }
    m->i = 0;
  }
  uint32_t y = m->s[m->i++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

/* _data.randperm(n, seed) -> {0-based indices}: torch's CPU randperm for n < 2^32/20 (a Fisher-Yates
 * pass drawing generator->random() % (n - i)); manual_seed keeps the low 32 bits of the seed */
static int l_randperm(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  lua_Integer seed = luaL_checkinteger(L, 2);
  if (n < 0 || n >= (lua_Integer)(0xffffffffu / 20)) return luaL_error(L, "randperm: n out of range");
  int64_t *r = malloc(sizeof *r * (n ? n : 1));
  if (!r) return luaL_error(L, "randperm: out of memory");
  mt19937 m;
  mt_seed(&m, (uint32_t)(uint64_t)seed);
  for (int64_t i = 0; i < n; i++) r[i] = i;
  for (int64_t i = 0; i < n - 1; i++) {
    int64_t z = (int64_t)(mt_next(&m) % (uint64_t)(n - i));
    int64_t t = r[i];
    r[i] = r[z + i];
    r[z + i] = t;
  }
  lua_createtable(L, (int)n, 0);
  for (int64_t i = 0; i < n; i++) {
    lua_pushinteger(L, r[i]);
    lua_rawseti(L, -2, i + 1);
  }
  free(r);
  return 1;
}

/* _data.u8_to_float(u8 [H, W, C]) -> f32 [C, H, W] in [-1, 1] (torchvision to_tensor, then (x-0.5)/0.5) */
static int l_u8_to_float(lua_State *L) {
  sf_lua_push_tensor(L, sf_image_u8_to_float(sf_lua_check_tensor(L, 1)));
  return 1;
}

void sf_lua_register_data(lua_State *L) {
  static const luaL_Reg methods[] = {{"get", l_get}, {"tensor", l_tensor}, {"put", l_put}, {"commit", l_commit},
                                     {"close", l_close}, {"path", l_path}, {NULL, NULL}};
  luaL_newmetatable(L, LMDB_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"lmdb_open", l_open}, {"listdir", l_listdir}, {"isdir", l_isdir},
                                 {"randperm", l_randperm}, {"u8_to_float", l_u8_to_float}, {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "_data");
}

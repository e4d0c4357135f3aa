/* lua_io.c — sfwb.load / sfwb.save: checkpoints (safetensors, sharded, torch .pt) as Lua tables. */
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/pt.h"
#include "io/statedict.h"
#include "lua/lua_tensor.h"

/* Lua errors longjmp: C resources live in userdata boxes whose __gc frees them */
#define SD_BOX "sfwb.io.statedict_box"
#define PT_BOX "sfwb.io.ptwriter_box"

static int sd_box_gc(lua_State *L) {
  sf_statedict **b = luaL_checkudata(L, 1, SD_BOX);
  sf_statedict_close(*b);
  *b = NULL;
  return 0;
}

static int pt_box_gc(lua_State *L) {
  sf_pt_writer **b = luaL_checkudata(L, 1, PT_BOX);
  sf_pt_writer_free(*b);
  *b = NULL;
  return 0;
}

static void push_shape(lua_State *L, int ndim, const int64_t *shape) {
  lua_createtable(L, ndim, 0);
  for (int d = 0; d < ndim; d++) {
    lua_pushinteger(L, shape[d]);
    lua_rawseti(L, -2, d + 1);
  }
}

/* sfwb.load(path [, {lazy=true}]) -> {name = tensor | value}, metadata */
static int l_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int lazy = 0;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "lazy");
    lazy = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  sf_statedict **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, SD_BOX);
  sf_statedict *sd = sf_statedict_open(path);
  if (!sd) return sf_lua_raise(L);
  *box = sd;
  int n = sf_statedict_count(sd);
  lua_createtable(L, 0, n);
  for (int i = 0; i < n; i++) {
    const sf_sd_entry *e = sf_statedict_entry(sd, i);
    switch (e->kind) {
    case SF_SD_TENSOR:
      if (lazy) {
        lua_createtable(L, 0, 2);
        push_shape(L, e->ndim, e->shape);
        lua_setfield(L, -2, "shape");
        lua_pushstring(L, sf_dtype_name(e->dtype));
        lua_setfield(L, -2, "dtype");
      } else {
        sf_lua_push_tensor(L, sf_statedict_get_entry(sd, e)); /* raises on NULL */
      }
      break;
    case SF_SD_INT: lua_pushinteger(L, e->i); break;
    case SF_SD_BOOL: lua_pushboolean(L, (int)e->i); break;
    case SF_SD_FLOAT: lua_pushnumber(L, e->f); break;
    case SF_SD_STRING: lua_pushlstring(L, e->str, e->str_len); break;
    case SF_SD_NONE: continue; /* None has no Lua value: the name is simply absent */
    }
    lua_setfield(L, -2, e->name);
  }
  int nm = sf_statedict_metadata_count(sd);
  lua_createtable(L, 0, nm);
  for (int i = 0; i < nm; i++) {
    const char *k, *v;
    sf_statedict_metadata_at(sd, i, &k, &v);
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
  }
  sf_statedict_close(sd);
  *box = NULL;
  return 2;
}

/* ---- safetensors: flatten nested tables to dotted names ---- */

typedef struct {
  int n, cap;
  char **names;
  sf_tensor **ts;
} flat_list;

#define FLAT_BOX "sfwb.io.flat_box"
static int flat_box_gc(lua_State *L) {
  flat_list *f = luaL_checkudata(L, 1, FLAT_BOX);
  for (int i = 0; i < f->n; i++) free(f->names[i]);
  free(f->names);
  free(f->ts); /* borrowed tensors: the Lua table keeps them alive */
  memset(f, 0, sizeof *f);
  return 0;
}

static void flatten_lua(lua_State *L, flat_list *f, int idx, const char *prefix, int depth, const char *path) {
  if (depth > 64) luaL_error(L, "%s: tables nest deeper than 64 levels (a cycle?) at '%s'", path, prefix);
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    char name[4096];
    if (lua_type(L, -2) == LUA_TSTRING) {
      snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "." : "", lua_tostring(L, -2));
    } else if (lua_isinteger(L, -2)) {
      snprintf(name, sizeof name, "%s%s%lld", prefix, *prefix ? "." : "", (long long)lua_tointeger(L, -2));
    } else {
      luaL_error(L, "%s: keys must be strings or integers (under '%s')", path, prefix);
    }
    sf_tensor *t = sf_lua_to_tensor(L, -1);
    if (t) {
      if (f->n == f->cap) {
        int cap = f->cap ? f->cap * 2 : 64;
        char **nn = realloc(f->names, cap * sizeof *nn);
        if (nn) f->names = nn;
        sf_tensor **nt = realloc(f->ts, cap * sizeof *nt);
        if (nt) f->ts = nt;
        if (!nn || !nt) luaL_error(L, "%s: out of memory", path);
        f->cap = cap;
      }
      f->names[f->n] = strdup(name);
      f->ts[f->n++] = t;
    } else if (lua_istable(L, -1)) {
      flatten_lua(L, f, -1, name, depth + 1, path);
    } else {
      luaL_error(L, "%s: '%s' is a %s; a safetensors file holds only tensors (save a .pt for other values)", path, name,
                 luaL_typename(L, -1));
    }
    lua_pop(L, 1);
  }
}

/* ---- .pt: nested tables become nested dicts (or lists for sequences 1..n) ---- */

static int is_sequence(lua_State *L, int idx) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx), count = 0;
  if (n == 0) return 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    count++;
    if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1 || lua_tointeger(L, -2) > n) {
      lua_pop(L, 2);
      return 0;
    }
    lua_pop(L, 1);
  }
  return count == n;
}

static void pt_value(lua_State *L, sf_pt_writer *w, const char *key, int idx, int depth, const char *path);

/* table.sort order of dict keys: integers (ascending) before strings (byte order) */
static int key_less(lua_State *L) {
  const int ia = lua_type(L, 1) != LUA_TSTRING, ib = lua_type(L, 2) != LUA_TSTRING;
  if (ia != ib) lua_pushboolean(L, ia);
  else if (ia) lua_pushboolean(L, lua_tointeger(L, 1) < lua_tointeger(L, 2));
  else lua_pushboolean(L, strcmp(lua_tostring(L, 1), lua_tostring(L, 2)) < 0);
  return 1;
}

static void pt_table(lua_State *L, sf_pt_writer *w, const char *key, int idx, int depth, const char *path) {
  idx = lua_absindex(L, idx);
  if (depth > 64) luaL_error(L, "%s: tables nest deeper than 64 levels (a cycle?)", path);
  if (is_sequence(L, idx)) {
    if (sf_pt_begin_list(w, key)) sf_lua_raise(L);
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, idx, i);
      pt_value(L, w, NULL, -1, depth + 1, path);
      lua_pop(L, 1);
    }
  } else {
    if (sf_pt_begin_dict(w, key)) sf_lua_raise(L);
    /* sorted keys (integers first, in order, then strings): the same table always gives the same file.
     * Integer keys stay integers (torch's optimizer state is {param index: state}). */
    lua_newtable(L);
    int keys = lua_gettop(L), k = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      lua_pop(L, 1);
      if (lua_type(L, -1) != LUA_TSTRING && !lua_isinteger(L, -1)) luaL_error(L, "%s: keys must be strings or integers", path);
      lua_pushvalue(L, -1);
      lua_rawseti(L, keys, ++k);
    }
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_pushvalue(L, keys);
    lua_pushcfunction(L, key_less);
    lua_call(L, 2, 0);
    lua_pop(L, 1);
    for (int i = 1; i <= k; i++) {
      lua_rawgeti(L, keys, i);
      lua_pushvalue(L, -1);
      lua_rawget(L, idx);
      if (lua_type(L, -2) == LUA_TSTRING) {
        pt_value(L, w, lua_tostring(L, -2), -1, depth + 1, path);
      } else {
        if (sf_pt_int_key(w, (int64_t)lua_tointeger(L, -2))) sf_lua_raise(L);
        pt_value(L, w, NULL, -1, depth + 1, path);
      }
      lua_pop(L, 2);
    }
    lua_pop(L, 1);
  }
  if (sf_pt_end(w)) sf_lua_raise(L);
}

static void pt_value(lua_State *L, sf_pt_writer *w, const char *key, int idx, int depth, const char *path) {
  idx = lua_absindex(L, idx);
  sf_tensor *t = sf_lua_to_tensor(L, idx);
  int rc = 0;
  if (t) {
    rc = sf_pt_tensor(w, key, t);
  } else {
    switch (lua_type(L, idx)) {
    case LUA_TTABLE: pt_table(L, w, key, idx, depth, path); return;
    case LUA_TBOOLEAN: rc = sf_pt_bool(w, key, lua_toboolean(L, idx)); break;
    case LUA_TNUMBER:
      rc = lua_isinteger(L, idx) ? sf_pt_int(w, key, lua_tointeger(L, idx)) : sf_pt_float(w, key, lua_tonumber(L, idx));
      break;
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      rc = sf_pt_str(w, key, s, len);
      break;
    }
    default:
      luaL_error(L, "%s: '%s' is a %s, which a .pt file cannot hold", path, key ? key : "(list item)", luaL_typename(L, idx));
    }
  }
  if (rc) {
    sf_error_prefix("%s: ", path);
    sf_lua_raise(L);
  }
}

static int has_suffix(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcmp(s + a - b, suf);
}

/* sfwb.save(path, tbl [, {metadata={k=v}}]) */
static int l_save(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  if (has_suffix(path, ".pt") || has_suffix(path, ".pth") || has_suffix(path, ".ckpt")) {
    sf_pt_writer **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    luaL_setmetatable(L, PT_BOX);
    *box = sf_pt_writer_new();
    if (!*box) return sf_lua_raise(L);
    pt_value(L, *box, NULL, 2, 0, path);
    if (sf_pt_writer_save(*box, path)) return sf_lua_raise(L);
    sf_pt_writer_free(*box);
    *box = NULL;
    return 0;
  }
  flat_list *f = lua_newuserdatauv(L, sizeof *f, 0);
  memset(f, 0, sizeof *f);
  luaL_setmetatable(L, FLAT_BOX);
  flatten_lua(L, f, 2, "", 0, path);
  /* metadata */
  int nm = 0;
  const char *mk[256], *mv[256];
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "metadata");
    if (lua_istable(L, -1)) {
      int mt = lua_gettop(L);
      lua_pushnil(L);
      while (lua_next(L, mt)) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
          return luaL_error(L, "%s: metadata keys and values must be strings", path);
        if (nm == 256) return luaL_error(L, "%s: at most 256 metadata entries", path);
        mk[nm] = lua_tostring(L, -2);
        mv[nm++] = lua_tostring(L, -1);
        lua_pop(L, 1);
      }
    }
  }
  if (sf_safetensors_save(path, f->n, (const char *const *)f->names, f->ts, nm, mk, mv)) return sf_lua_raise(L);
  return 0;
}

void sf_lua_register_io(lua_State *L) {
  sf_lua_gc_metatable(L, SD_BOX, sd_box_gc);
  sf_lua_gc_metatable(L, PT_BOX, pt_box_gc);
  sf_lua_gc_metatable(L, FLAT_BOX, flat_box_gc);
  lua_pushcfunction(L, l_load);
  lua_setfield(L, -2, "load");
  lua_pushcfunction(L, l_save);
  lua_setfield(L, -2, "save");
}

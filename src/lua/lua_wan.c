/* lua_wan.c — Lua binding of the Wan DiT: sfwb.wan.load/new, the model object (config, parameters,
 * loading, to/clone, forward), KV and cross-attention caches, and attention captures (API.md). */
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/ops.h"
#include "lua/lua_tensor.h"
#include "models/wan.h"

#define WAN_MT "sfwb.WanModel"
#define KV_MT "sfwb.WanKVCache"
#define XC_MT "sfwb.WanCrossAttnCache"
#define CAP_MT "sfwb.WanCapture"

typedef struct { sf_wan_model *m; } wan_ud;
typedef struct { sf_wan_kv *kv; } kv_ud;
typedef struct { sf_wan_xcache *xc; } xc_ud;
typedef struct { sf_wan_capture *c; } cap_ud;

static sf_wan_model *check_model(lua_State *L, int i) {
  wan_ud *u = luaL_checkudata(L, i, WAN_MT);
  if (!u->m) luaL_error(L, "the Wan model was freed");
  return u->m;
}

static void push_model(lua_State *L, sf_wan_model *m) {
  if (!m) sf_lua_raise(L);
  wan_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->m = m;
  luaL_setmetatable(L, WAN_MT);
}

/* ---- option helpers ---- */
static int opt_field(lua_State *L, int t, const char *k) {
  if (lua_type(L, t) != LUA_TTABLE) return lua_pushnil(L), LUA_TNIL;
  return lua_getfield(L, t, k);
}

static lua_Integer opt_int(lua_State *L, int t, const char *k, lua_Integer dflt) {
  int ty = opt_field(L, t, k);
  lua_Integer v = dflt;
  if (ty != LUA_TNIL) {
    int ok;
    v = lua_tointegerx(L, -1, &ok);
    if (!ok) luaL_error(L, "option %s must be an integer, got %s", k, luaL_typename(L, -1));
  }
  lua_pop(L, 1);
  return v;
}

static int opt_bool(lua_State *L, int t, const char *k, int dflt) {
  int ty = opt_field(L, t, k);
  int v = ty == LUA_TNIL ? dflt : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* autocast = "bf16" | "f16" | true (bf16) | false | "off" | "f32": upstream Wan's amp.autocast with its
 * fp32 islands (spec 1.10); nil keeps dflt. Returns an sf_dtype (SF_F32 = off). */
static int opt_autocast(lua_State *L, int t, int dflt) {
  int ty = opt_field(L, t, "autocast"), v = dflt;
  if (ty == LUA_TBOOLEAN) v = lua_toboolean(L, -1) ? SF_BF16 : SF_F32;
  else if (ty == LUA_TSTRING) {
    const char *s = lua_tostring(L, -1);
    if (!strcmp(s, "bf16")) v = SF_BF16;
    else if (!strcmp(s, "f16")) v = SF_F16;
    else if (!strcmp(s, "off") || !strcmp(s, "f32")) v = SF_F32;
    else luaL_error(L, "option autocast must be \"bf16\", \"f16\" or false, got \"%s\"", s);
  } else if (ty != LUA_TNIL) luaL_error(L, "option autocast must be \"bf16\", \"f16\" or false, got a %s", luaL_typename(L, -1));
  lua_pop(L, 1);
  return v;
}

static void read_causal_opts(lua_State *L, int t, sf_wan_config *c) {
  c->causal = opt_bool(L, t, "causal", c->causal);
  c->local_attn_size = opt_int(L, t, "local_attn_size", c->local_attn_size);
  c->sink_size = opt_int(L, t, "sink_size", c->sink_size);
  c->num_frame_per_block = opt_int(L, t, "num_frame_per_block", c->num_frame_per_block);
  c->independent_first_frame = opt_bool(L, t, "independent_first_frame", c->independent_first_frame);
}

static void check_opts_keys(lua_State *L, int t, const char *what, const char *const *allowed) {
  if (lua_type(L, t) != LUA_TTABLE) return;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    int ok = 0;
    for (int i = 0; k && allowed[i]; i++) ok |= !strcmp(allowed[i], k);
    if (!ok) luaL_error(L, "%s: unknown option '%s'", what, k ? k : luaL_typename(L, -1));
  }
}

static const char *const LOAD_OPTS[] = {"causal", "dtype", "device", "local_attn_size", "sink_size", "num_frame_per_block",
                                        "independent_first_frame", "autocast", NULL};

/* sfwb.wan.load(dir, opts) */
static int l_wan_load(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  check_opts_keys(L, 2, "sfwb.wan.load", LOAD_OPTS);
  sf_wan_config over;
  sf_wan_config_defaults(&over);
  read_causal_opts(L, 2, &over);
  sf_dtype dt = SF_F32;
  sf_device dev = sf_cpu();
  sf_lua_opt_dtype_device(L, 2, &dt, &dev);
  int ac = opt_autocast(L, 2, SF_F32); /* checked before the (slow) load */
  sf_wan_model *m = sf_wan_load(dir, &over, dt, dev);
  if (m) m->autocast = (sf_dtype)ac;
  push_model(L, m);
  return 1;
}

/* sfwb.wan.new(config_table, opts): random init */
static int l_wan_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  check_opts_keys(L, 2, "sfwb.wan.new", LOAD_OPTS);
  sf_wan_config c;
  sf_wan_config_defaults(&c);
  static const char *ints[] = {"dim", "ffn_dim", "freq_dim", "in_dim", "out_dim", "num_heads", "num_layers", "text_dim",
                               "text_len", "clip_dim", NULL};
  int64_t *dst[] = {&c.dim, &c.ffn_dim, &c.freq_dim, &c.in_dim, &c.out_dim, &c.num_heads, &c.num_layers, &c.text_dim,
                    &c.text_len, &c.clip_dim};
  for (int i = 0; ints[i]; i++) *dst[i] = opt_int(L, 1, ints[i], *dst[i]);
  if (lua_getfield(L, 1, "eps") != LUA_TNIL) c.eps = luaL_checknumber(L, -1);
  lua_pop(L, 1);
  if (lua_getfield(L, 1, "model_type") != LUA_TNIL) {
    const char *mt = luaL_checkstring(L, -1);
    if (strcmp(mt, "t2v") && strcmp(mt, "i2v")) luaL_error(L, "sfwb.wan.new: model_type must be \"t2v\" or \"i2v\"");
    strcpy(c.model_type, mt);
  }
  lua_pop(L, 1);
  read_causal_opts(L, 1, &c); /* runtime fields may sit in the config table too */
  read_causal_opts(L, 2, &c);
  sf_dtype dt = SF_F32;
  sf_device dev = sf_cpu();
  sf_lua_opt_dtype_device(L, 2, &dt, &dev);
  int ac = opt_autocast(L, 2, SF_F32);
  sf_wan_model *m = sf_wan_new(&c, dt, dev, true);
  if (m) m->autocast = (sf_dtype)ac;
  push_model(L, m);
  return 1;
}

/* ---- model ---- */
static void push_config(lua_State *L, const sf_wan_model *m) {
  const sf_wan_config *c = &m->cfg;
  lua_createtable(L, 0, 20);
  lua_pushstring(L, c->model_type), lua_setfield(L, -2, "model_type");
#define SETI(k) lua_pushinteger(L, (lua_Integer)c->k), lua_setfield(L, -2, #k)
  SETI(dim); SETI(ffn_dim); SETI(freq_dim); SETI(in_dim); SETI(out_dim); SETI(num_heads); SETI(num_layers);
  SETI(text_dim); SETI(text_len); SETI(local_attn_size); SETI(sink_size); SETI(num_frame_per_block);
  if (!strcmp(c->model_type, "i2v")) SETI(clip_dim);
#undef SETI
  lua_pushnumber(L, c->eps), lua_setfield(L, -2, "eps");
  lua_pushboolean(L, c->causal), lua_setfield(L, -2, "causal");
  lua_pushboolean(L, c->independent_first_frame), lua_setfield(L, -2, "independent_first_frame");
  lua_pushinteger(L, c->dim / c->num_heads), lua_setfield(L, -2, "head_dim");
  lua_pushstring(L, sf_dtype_name(m->dtype)), lua_setfield(L, -2, "dtype");
  if (m->autocast == SF_F32) lua_pushboolean(L, 0);
  else lua_pushstring(L, sf_dtype_name(m->autocast));
  lua_setfield(L, -2, "autocast");
  char buf[32];
  lua_pushstring(L, sf_device_str(m->device, buf, sizeof buf)), lua_setfield(L, -2, "device");
}

static int l_parameters(lua_State *L) {
  sf_wan_model *m = check_model(L, 1);
  lua_createtable(L, 0, m->nparams);
  for (int i = 0; i < m->nparams; i++) {
    sf_lua_push_tensor(L, sf_retain(m->params[i]));
    lua_setfield(L, -2, m->names[i]);
  }
  return 1;
}

static int l_load_state_dict(lua_State *L) {
  sf_wan_model *m = check_model(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  int strict = opt_bool(L, 3, "strict", 1);
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, 2)) n++, lua_pop(L, 1);
  const char **names = calloc((size_t)n + 1, sizeof(char *));
  sf_tensor **ts = calloc((size_t)n + 1, sizeof(sf_tensor *));
  if (!names || !ts) {
    free(names), free(ts);
    return luaL_error(L, "load_state_dict: out of memory");
  }
  int i = 0;
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    if (lua_type(L, -2) != LUA_TSTRING || !(ts[i] = sf_lua_to_tensor(L, -1))) {
      free(names), free(ts);
      return luaL_error(L, "load_state_dict: expected {name = tensor}, got a %s entry", luaL_typename(L, -1));
    }
    names[i++] = lua_tostring(L, -2); /* the keys stay alive in the table */
    lua_pop(L, 1);
  }
  int rc = sf_wan_load_tensors(m, n, names, ts, strict);
  free(names), free(ts);
  if (rc) return sf_lua_raise(L);
  lua_settop(L, 1);
  return 1;
}

static int l_load_checkpoint(lua_State *L) {
  sf_wan_model *m = check_model(L, 1);
  const char *path = luaL_checkstring(L, 2);
  int ema = opt_bool(L, 3, "ema", 0);
  int n = 0;
  char key[32];
  if (sf_wan_load_checkpoint(m, path, ema, &n, key, sizeof key)) return sf_lua_raise(L);
  lua_createtable(L, 0, 3);
  lua_pushstring(L, key), lua_setfield(L, -2, "key");
  lua_pushstring(L, path), lua_setfield(L, -2, "path");
  lua_pushinteger(L, n), lua_setfield(L, -2, "n_tensors");
  return 1;
}

static int l_to(lua_State *L) {
  sf_wan_model *m = check_model(L, 1);
  sf_dtype dt = m->dtype;
  sf_device dev = m->device;
  sf_lua_opt_dtype_device(L, 2, &dt, &dev);
  if (sf_wan_to(m, dev, dt)) return sf_lua_raise(L);
  lua_settop(L, 1);
  return 1;
}

static int l_clone(lua_State *L) {
  push_model(L, sf_wan_clone(check_model(L, 1)));
  return 1;
}

/* m:_set_param(name, t): add or replace one parameter (the LoRA adapters; sfwb/lora.lua) */
static int l_set_param(lua_State *L) {
  sf_wan_model *m = check_model(L, 1);
  const char *name = luaL_checkstring(L, 2);
  sf_tensor *t = sf_lua_check_tensor(L, 3);
  if (sf_wan_set_param(m, name, sf_retain(t))) return sf_lua_raise(L);
  return 0;
}

/* m:_drop_params(part) -> n: remove every parameter whose name contains part */
static int l_drop_params(lua_State *L) {
  sf_wan_model *m = check_model(L, 1);
  int n = sf_wan_drop_params(m, luaL_checkstring(L, 2));
  if (n < 0) return sf_lua_raise(L);
  lua_pushinteger(L, n);
  return 1;
}

/* m:_lora_config{rank=, scale=, dropout=} sets, m:_lora_config() -> rank, scale, dropout */
static int l_lora_config(lua_State *L) {
  sf_wan_model *m = check_model(L, 1);
  if (lua_istable(L, 2)) {
    m->lora_rank = (int)opt_int(L, 2, "rank", m->lora_rank);
    lua_getfield(L, 2, "scale");
    if (!lua_isnil(L, -1)) m->lora_scale = luaL_checknumber(L, -1);
    lua_getfield(L, 2, "dropout");
    if (!lua_isnil(L, -1)) m->lora_dropout = luaL_checknumber(L, -1);
    lua_pop(L, 2);
  }
  lua_pushinteger(L, m->lora_rank), lua_pushnumber(L, m->lora_scale), lua_pushnumber(L, m->lora_dropout);
  return 3;
}

static int l_requires_grad(lua_State *L) {
  sf_wan_model *m = check_model(L, 1);
  int on = lua_isnone(L, 2) ? 1 : lua_toboolean(L, 2);
  for (int i = 0; i < m->nparams; i++) m->params[i]->requires_grad = on;
  lua_settop(L, 1);
  return 1;
}

static sf_tensor *opt_tensor(lua_State *L, int t, const char *k) {
  int ty = opt_field(L, t, k);
  sf_tensor *x = NULL;
  if (ty != LUA_TNIL && !(x = sf_lua_to_tensor(L, -1))) luaL_error(L, "forward: option %s must be a tensor", k);
  lua_pop(L, 1);
  return x; /* borrowed: the opts table keeps it alive */
}

static const char *const FWD_OPTS[] = {"clip_fea", "y", "kv_cache", "crossattn_cache", "current_start_frame", "tag", "checkpoint",
                                       "autocast", "sink_recache", "clean_x", "aug_t", "features", NULL};

static int64_t plan_int(lua_State *L, int t, const char *k, int64_t dflt) {
  int ty = lua_getfield(L, t, k);
  int64_t v = dflt;
  if (ty != LUA_TNIL) {
    int ok;
    v = lua_tointegerx(L, -1, &ok);
    if (!ok) luaL_error(L, "kv policy plan: %s must be an integer, got %s", k, luaL_typename(L, -1));
  }
  lua_pop(L, 1);
  return v;
}

/* the cache's policy plans this call: policy:plan(state, call) -> {roll=, write=, read=, advance=, global_end=,
 * local_end=} in frames (sfwb/kv_policy.lua). Returns 1 with *p filled, 0 when the cache has no policy. */
static int kv_plan(lua_State *L, int kvi, int opts, sf_tensor *x, sf_wan_kv_plan *p) {
  sf_wan_kv *kv = ((kv_ud *)lua_touserdata(L, kvi))->kv;
  if (lua_getiuservalue(L, kvi, 1) != LUA_TTABLE) return lua_pop(L, 1), 0;
  const int pol = lua_gettop(L);
  lua_getfield(L, pol, "plan");
  lua_pushvalue(L, pol);
  const int64_t S = kv->S > 0 ? kv->S : 1;
  lua_createtable(L, 0, 8); /* state */
  lua_pushinteger(L, kv->global_end[0] / S), lua_setfield(L, -2, "global_end");
  lua_pushinteger(L, kv->local_end[0] / S), lua_setfield(L, -2, "local_end");
  lua_pushinteger(L, kv->capacity_frames), lua_setfield(L, -2, "capacity");
  lua_pushinteger(L, kv->sink_size), lua_setfield(L, -2, "sink_size");
  lua_pushinteger(L, kv->local_attn_size), lua_setfield(L, -2, "local_attn_size");
  if (kv->max_attn_frames > 0) lua_pushinteger(L, kv->max_attn_frames), lua_setfield(L, -2, "max_attention_frames");
  lua_createtable(L, 0, 4); /* call */
  lua_pushinteger(L, opt_int(L, opts, "current_start_frame", 0)), lua_setfield(L, -2, "start");
  lua_pushinteger(L, x->ndim == 5 ? x->shape[2] : 0), lua_setfield(L, -2, "frames");
  lua_pushboolean(L, opt_bool(L, opts, "sink_recache", 0)), lua_setfield(L, -2, "sink_recache");
  if (opt_field(L, opts, "kv_args") == LUA_TNIL) lua_pop(L, 1);
  else lua_setfield(L, -2, "args");
  lua_call(L, 3, 1);
  if (!lua_istable(L, -1)) luaL_error(L, "kv policy plan: expected a table, got %s", luaL_typename(L, -1));
  const int t = lua_gettop(L);
  memset(p, 0, sizeof *p);
  if (lua_getfield(L, t, "roll") == LUA_TTABLE) {
    p->roll_dst = plan_int(L, -1, "dst", 0), p->roll_src = plan_int(L, -1, "src", 0), p->roll_n = plan_int(L, -1, "n", 0);
  }
  lua_pop(L, 1);
  if (lua_getfield(L, t, "write") != LUA_TTABLE) luaL_error(L, "kv policy plan: write={at=, from=, n=} is required");
  p->write_at = plan_int(L, -1, "at", 0), p->write_from = plan_int(L, -1, "from", 0), p->write_n = plan_int(L, -1, "n", 0);
  lua_pop(L, 1);
  if (lua_getfield(L, t, "read") != LUA_TTABLE) luaL_error(L, "kv policy plan: read={{lo, hi}, ...} is required");
  p->n_read = (int)luaL_len(L, -1);
  if (p->n_read < 1 || p->n_read > 2) luaL_error(L, "kv policy plan: 1 or 2 read ranges, got %d", p->n_read);
  for (int r = 0; r < p->n_read; r++) {
    lua_geti(L, -1, r + 1);
    lua_geti(L, -1, 1), lua_geti(L, -2, 2);
    p->read_lo[r] = luaL_checkinteger(L, -2), p->read_hi[r] = luaL_checkinteger(L, -1);
    lua_pop(L, 3);
  }
  lua_pop(L, 1);
  p->advance = lua_getfield(L, t, "advance") != LUA_TNIL && lua_toboolean(L, -1);
  lua_pop(L, 1);
  p->global_end = plan_int(L, t, "global_end", 0), p->local_end = plan_int(L, t, "local_end", 0);
  lua_pop(L, 2); /* plan, policy */
  return 1;
}

static int l_forward(lua_State *L) {
  sf_wan_model *m = check_model(L, 1);
  sf_tensor *x = sf_lua_check_tensor(L, 2), *t = sf_lua_check_tensor(L, 3), *ctx = sf_lua_check_tensor(L, 4);
  check_opts_keys(L, 5, "forward", FWD_OPTS);
  sf_wan_fwd_opts o;
  sf_wan_fwd_opts_init(&o);
  o.clip_fea = opt_tensor(L, 5, "clip_fea");
  o.y = opt_tensor(L, 5, "y");
  o.clean_x = opt_tensor(L, 5, "clean_x"); /* teacher forcing: clean latents [B, C, F, H, W] */
  o.aug_t = opt_tensor(L, 5, "aug_t");     /* and their timesteps [B, F] (default zeros) */
  sf_wan_kv_plan plan;
  if (opt_field(L, 5, "kv_cache") != LUA_TNIL) {
    o.kv = ((kv_ud *)luaL_checkudata(L, -1, KV_MT))->kv;
    if (kv_plan(L, lua_gettop(L), 5, x, &plan)) o.kv_plan = &plan;
  }
  lua_pop(L, 1);
  if (opt_field(L, 5, "crossattn_cache") != LUA_TNIL) o.xcache = ((xc_ud *)luaL_checkudata(L, -1, XC_MT))->xc;
  lua_pop(L, 1);
  o.start_frame = opt_int(L, 5, "current_start_frame", 0);
  o.checkpoint = opt_bool(L, 5, "checkpoint", 0);
  o.autocast = opt_autocast(L, 5, -1);
  if (opt_field(L, 5, "tag") == LUA_TTABLE) {
    int tg = lua_gettop(L);
    o.tag.chunk = opt_int(L, tg, "chunk", -1);
    o.tag.step = opt_int(L, tg, "step", -1);
    if (lua_getfield(L, tg, "pass") == LUA_TSTRING) snprintf(o.tag.pass, sizeof o.tag.pass, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    if (lua_getfield(L, tg, "timestep") == LUA_TNUMBER) o.tag.timestep = lua_tonumber(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  /* features = {block, ...} (0-based): also return the residual stream after those blocks and the time
   * embedding e (the discriminator of Self-Forcing's GAN reads them) -> out, {[B, L, D], ...}, e [B, Fe, D] */
  int feats[64];
  sf_tensor *fo[64] = {0}, *eo = NULL;
  if (opt_field(L, 5, "features") != LUA_TNIL) {
    luaL_checktype(L, -1, LUA_TTABLE);
    const lua_Integer n = luaL_len(L, -1);
    if (n < 1 || n > 64) return luaL_error(L, "forward: features must list 1..64 block ids, got %d", (int)n);
    for (int j = 0; j < (int)n; j++) {
      lua_geti(L, -1, j + 1);
      if (!lua_isinteger(L, -1)) return luaL_error(L, "forward: features[%d] must be an integer block id (0-based)", j + 1);
      feats[j] = (int)lua_tointeger(L, -1);
      lua_pop(L, 1);
    }
    o.n_features = (int)n, o.features = feats, o.feat_out = fo, o.e_out = &eo;
  }
  lua_pop(L, 1);
  sf_tensor *out = sf_wan_forward(m, x, t, ctx, &o);
  if (!out || !o.n_features) {
    for (int j = 0; j < o.n_features; j++) sf_release(fo[j]);
    sf_release(eo);
    sf_lua_push_tensor(L, out);
    return 1;
  }
  sf_lua_push_tensor(L, out);
  lua_createtable(L, o.n_features, 0);
  for (int j = 0; j < o.n_features; j++) {
    sf_lua_push_tensor(L, fo[j]);
    lua_rawseti(L, -2, j + 1);
  }
  sf_lua_push_tensor(L, eo);
  return 3;
}

static int l_kv_cache(lua_State *L) {
  sf_wan_model *m = check_model(L, 1);
  static const char *const KVO[] = {"batch", "frames", "local_attn_size", "sink_size", "tokens_per_frame", "policy",
                                    "max_attention_frames", "detach", "capacity", NULL};
  check_opts_keys(L, 2, "kv_cache", KVO);
  sf_wan_model tmp = *m; /* per-cache window overrides, sized from this config */
  tmp.cfg.local_attn_size = opt_int(L, 2, "local_attn_size", m->cfg.local_attn_size);
  tmp.cfg.sink_size = opt_int(L, 2, "sink_size", m->cfg.sink_size);
  /* capacity = N: a buffer of N frames whatever the window (LongLive's training cache: local_attn_size +
     slice_last_frames frames, rolled when full, attention limited by max_attention_frames) */
  const int64_t capacity = opt_int(L, 2, "capacity", 0);
  if (capacity < 0) return luaL_error(L, "kv_cache: capacity must be >= 1 frames, got %d", (int)capacity);
  const int64_t local = tmp.cfg.local_attn_size;
  if (capacity > 0) tmp.cfg.local_attn_size = -1;
  sf_wan_kv *kv = sf_wan_kv_new(&tmp, opt_int(L, 2, "batch", 1), capacity > 0 ? capacity : opt_int(L, 2, "frames", 0),
                                opt_int(L, 2, "tokens_per_frame", 0));
  if (!kv) return sf_lua_raise(L);
  kv->local_attn_size = local;
  kv->detach = opt_bool(L, 2, "detach", 0); /* no gradient through earlier writes (detach_kv_cache) */
  kv->max_attn_frames = opt_int(L, 2, "max_attention_frames", 0);
  if (kv->max_attn_frames < 0) {
    sf_wan_kv_free(kv);
    return luaL_error(L, "kv_cache: max_attention_frames must be >= 1");
  }
  /* the policy (sfwb/kv_policy.lua): a name or a policy table; it plans every forward call's writes and reads */
  if (lua_istable(L, 2)) lua_getfield(L, 2, "policy");
  else lua_pushnil(L);
  lua_getglobal(L, "require");
  lua_pushstring(L, "sfwb.kv_policy");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    sf_wan_kv_free(kv);
    return lua_error(L);
  }
  lua_getfield(L, -1, "resolve");
  lua_pushvalue(L, -3);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    sf_wan_kv_free(kv);
    return lua_error(L);
  }
  const int pol = lua_gettop(L);
  kv_ud *u = lua_newuserdatauv(L, sizeof *u, 1);
  u->kv = kv;
  luaL_setmetatable(L, KV_MT);
  lua_pushvalue(L, pol);
  lua_setiuservalue(L, -2, 1);
  return 1;
}

static int l_crossattn_cache(lua_State *L) {
  sf_wan_xcache *xc = sf_wan_xcache_new(check_model(L, 1));
  if (!xc) return sf_lua_raise(L);
  xc_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->xc = xc;
  luaL_setmetatable(L, XC_MT);
  return 1;
}

/* m:capture_attention{layers=, attn=, what=, reduce=, where={steps=, passes=, chunks=}} */
static void read_int_list(lua_State *L, int t, const char *k, int64_t **out, int *n) {
  *out = NULL, *n = 0;
  int ty = lua_getfield(L, t, k);
  if (ty == LUA_TTABLE) {
    int len = (int)luaL_len(L, -1);
    *out = malloc(sizeof(int64_t) * (size_t)(len + 1));
    for (int i = 1; i <= len; i++) {
      lua_geti(L, -1, i);
      (*out)[i - 1] = luaL_checkinteger(L, -1);
      lua_pop(L, 1);
    }
    *n = len;
  } else if (ty == LUA_TNUMBER) {
    *out = malloc(sizeof(int64_t));
    (*out)[0] = luaL_checkinteger(L, -1);
    *n = 1;
  } else if (ty != LUA_TNIL && !(ty == LUA_TSTRING && !strcmp(lua_tostring(L, -1), "all"))) {
    luaL_error(L, "capture_attention: where.%s must be a list of integers or \"all\"", k);
  }
  lua_pop(L, 1);
}

static int l_capture(lua_State *L) {
  sf_wan_model *m = check_model(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  static const char *const CO[] = {"layers", "attn", "what", "reduce", "where", "frames", "max_elems", NULL};
  check_opts_keys(L, 2, "capture_attention", CO);
  const int NL = (int)m->cfg.num_layers;
  bool *layers = calloc((size_t)NL, sizeof(bool));
  int ty = lua_getfield(L, 2, "layers");
  if (ty == LUA_TSTRING && !strcmp(lua_tostring(L, -1), "all")) {
    for (int i = 0; i < NL; i++) layers[i] = true;
  } else if (ty == LUA_TTABLE || ty == LUA_TNUMBER) {
    int len = ty == LUA_TNUMBER ? 1 : (int)luaL_len(L, -1);
    for (int i = 1; i <= len; i++) {
      lua_Integer li;
      if (ty == LUA_TNUMBER) li = lua_tointeger(L, -1);
      else lua_geti(L, -1, i), li = lua_tointeger(L, -1), lua_pop(L, 1);
      if (li < 0 || li >= NL) {
        free(layers);
        return luaL_error(L, "capture_attention: layer %d does not exist (layers are 0..%d, 0-based as in the checkpoint keys)", (int)li, NL - 1);
      }
      layers[li] = true;
    }
  } else {
    free(layers);
    return luaL_error(L, "capture_attention: layers must be a list of 0-based layer ids or \"all\"");
  }
  lua_pop(L, 1);
  const char *attn = (lua_getfield(L, 2, "attn"), luaL_optstring(L, -1, "self"));
  const char *what = (lua_getfield(L, 2, "what"), luaL_optstring(L, -1, "logits"));
  const char *reduce = (lua_getfield(L, 2, "reduce"), luaL_optstring(L, -1, "frame"));
  bool cross = !strcmp(attn, "cross");
  if (!cross && strcmp(attn, "self")) return free(layers), luaL_error(L, "capture_attention: attn must be \"self\" or \"cross\"");
  sf_cap_what w = !strcmp(what, "logits") ? SF_CAP_LOGITS : !strcmp(what, "probs") ? SF_CAP_PROBS : !strcmp(what, "mass") ? SF_CAP_MASS : -1;
  if ((int)w < 0) return free(layers), luaL_error(L, "capture_attention: what must be \"logits\", \"probs\" or \"mass\"");
  sf_cap_reduce r = !strcmp(reduce, "frame") ? SF_CAP_FRAME : !strcmp(reduce, "query_mean") ? SF_CAP_QUERY_MEAN : !strcmp(reduce, "none") ? SF_CAP_NONE : -1;
  if ((int)r < 0) return free(layers), luaL_error(L, "capture_attention: reduce must be \"frame\", \"query_mean\" or \"none\"");
  lua_pop(L, 3);
  sf_cap_filter f;
  memset(&f, 0, sizeof f);
  if (lua_getfield(L, 2, "where") == LUA_TTABLE) {
    int wt = lua_gettop(L);
    read_int_list(L, wt, "steps", &f.steps, &f.n_steps);
    read_int_list(L, wt, "chunks", &f.chunks, &f.n_chunks);
    int pt = lua_getfield(L, wt, "passes");
    if (pt == LUA_TSTRING && strcmp(lua_tostring(L, -1), "all")) {
      snprintf(f.passes[0], sizeof f.passes[0], "%s", lua_tostring(L, -1));
      f.n_passes = 1;
    } else if (pt == LUA_TTABLE) {
      int len = (int)luaL_len(L, -1);
      for (int i = 1; i <= len && i <= 4; i++) {
        lua_geti(L, -1, i);
        snprintf(f.passes[i - 1], sizeof f.passes[0], "%s", luaL_checkstring(L, -1));
        lua_pop(L, 1);
        f.n_passes = i;
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  /* reduce = "none": frames = {q = {first, last}, k = {first, last}} (absolute 0-based frame ids; for
   * cross-attention k counts context tokens) */
  int64_t rq[2] = {-1, -1}, rk[2] = {-1, -1};
  if (r == SF_CAP_NONE) {
    if (lua_getfield(L, 2, "frames") != LUA_TTABLE) {
      free(layers), free(f.steps), free(f.chunks);
      return luaL_error(L, "capture_attention: reduce=\"none\" needs frames={q={first, last}, k={first, last}}");
    }
    for (int a = 0; a < 2; a++) {
      int64_t *dstr = a ? rk : rq;
      if (lua_getfield(L, -1, a ? "k" : "q") == LUA_TTABLE) {
        lua_geti(L, -1, 1), dstr[0] = lua_tointeger(L, -1), lua_pop(L, 1);
        lua_geti(L, -1, 2), dstr[1] = lua_isnil(L, -1) ? dstr[0] : lua_tointeger(L, -1), lua_pop(L, 1);
      } else if (lua_isinteger(L, -1)) {
        dstr[0] = dstr[1] = lua_tointeger(L, -1);
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  } else if (lua_getfield(L, 2, "frames"), !lua_isnil(L, -1)) {
    free(layers), free(f.steps), free(f.chunks);
    return luaL_error(L, "capture_attention: frames= is only for reduce=\"none\"");
  } else {
    lua_pop(L, 1);
  }
  const int64_t max_elems = opt_int(L, 2, "max_elems", 0);
  sf_wan_capture *c = sf_wan_capture_add(m, layers, cross, w, r, &f);
  free(layers), free(f.steps), free(f.chunks);
  if (!c) return sf_lua_raise(L);
  if (r == SF_CAP_NONE && sf_wan_capture_set_range(c, rq[0], rq[1], rk[0], rk[1], max_elems)) {
    sf_wan_capture_remove(c);
    sf_wan_capture_free(c);
    return sf_lua_raise(L);
  }
  cap_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->c = c;
  luaL_setmetatable(L, CAP_MT);
  return 1;
}

/* ---- per-block hook (FSDP, lua/sfwb/dist/fsdp.lua) ----
 * m:_set_block_hook(fn | nil): fn(block (0-based), phase, recompute) runs around each block (wan.h
 * block_hook; phase "pre_forward", "post_forward", "pre_backward", "post_backward"). It runs on a Lua
 * thread of its own (forward and backward are called from whatever thread), kept with fn in the registry
 * table below, keyed by the C model (the Lua object may be collected while a graph still holds the model). */
#define HOOKS_KEY "sfwb.wan.block_hooks"
static const char *const PHASES[] = {"pre_forward", "post_forward", "pre_backward", "post_backward"};

typedef struct { lua_State *L; const void *key; } hook_ud;

static int run_block_hook(void *p, int block, int phase, bool recompute) {
  hook_ud *h = p;
  lua_State *L = h->L;
  int top = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, HOOKS_KEY);
  if (lua_rawgetp(L, -1, h->key) != LUA_TTABLE) return lua_settop(L, top), 0; /* removed */
  lua_rawgeti(L, -1, 1);
  lua_pushinteger(L, block);
  lua_pushstring(L, PHASES[phase]);
  lua_pushboolean(L, recompute);
  int rc = lua_pcall(L, 3, 0, 0);
  if (rc != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    sf_error("%s", msg ? msg : "wan block hook failed");
  }
  lua_settop(L, top);
  return rc == LUA_OK ? 0 : -1;
}

static int l_set_block_hook(lua_State *L) {
  sf_wan_model *m = check_model(L, 1);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
  if (lua_getfield(L, LUA_REGISTRYINDEX, HOOKS_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, HOOKS_KEY);
  }
  int reg = lua_gettop(L);
  if (lua_isnoneornil(L, 2)) {
    lua_pushnil(L);
    lua_rawsetp(L, reg, m);
    if (m->block_hook_free) m->block_hook_free(m->block_hook_ud);
    m->block_hook = NULL, m->block_hook_ud = NULL, m->block_hook_free = NULL;
    return 0;
  }
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, 1);
  lua_State *T = lua_newthread(L);
  lua_rawseti(L, -2, 2);
  lua_rawsetp(L, reg, m);
  if (!m->block_hook) {
    hook_ud *h = malloc(sizeof *h);
    if (!h) return luaL_error(L, "_set_block_hook: out of memory");
    h->key = m;
    m->block_hook_ud = h;
    m->block_hook_free = free;
    m->block_hook = run_block_hook;
  }
  ((hook_ud *)m->block_hook_ud)->L = T;
  return 0;
}

static int l_model_gc(lua_State *L) {
  wan_ud *u = luaL_checkudata(L, 1, WAN_MT);
  sf_wan_free(u->m);
  u->m = NULL;
  return 0;
}

static int l_model_tostring(lua_State *L) {
  sf_wan_model *m = check_model(L, 1);
  char buf[32];
  lua_pushfstring(L, "WanModel(%s%s, dim %d, %d layers, %d heads, %s, %s)", m->cfg.causal ? "causal " : "", m->cfg.model_type,
                  (int)m->cfg.dim, (int)m->cfg.num_layers, (int)m->cfg.num_heads, sf_dtype_name(m->dtype),
                  sf_device_str(m->device, buf, sizeof buf));
  return 1;
}

static const luaL_Reg MODEL_METHODS[] = {
  {"parameters", l_parameters}, {"state_dict", l_parameters}, {"load_state_dict", l_load_state_dict},
  {"load_checkpoint", l_load_checkpoint}, {"to", l_to}, {"clone", l_clone}, {"requires_grad_", l_requires_grad},
  {"forward", l_forward}, {"kv_cache", l_kv_cache}, {"crossattn_cache", l_crossattn_cache},
  {"capture_attention", l_capture}, {"_set_param", l_set_param}, {"_drop_params", l_drop_params},
  {"_lora_config", l_lora_config}, {"_set_block_hook", l_set_block_hook}, {NULL, NULL}};

static int l_model_index(lua_State *L) {
  sf_wan_model *m = check_model(L, 1);
  const char *k = luaL_checkstring(L, 2);
  if (!strcmp(k, "config")) return push_config(L, m), 1;
  luaL_getmetatable(L, WAN_MT);
  lua_getfield(L, -1, "methods");
  if (lua_getfield(L, -1, k) != LUA_TNIL || k[0] == '_') return 1;
  /* methods written in Lua (sfwb/wan_methods.lua: load_lora, lora, merge_lora, ...) */
  lua_getglobal(L, "require");
  lua_pushstring(L, "sfwb.wan_methods");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, k);
  return 1;
}

/* ---- KV cache ---- */
static sf_wan_kv *check_kv(lua_State *L, int i) { return ((kv_ud *)luaL_checkudata(L, i, KV_MT))->kv; }

static int l_kv_reset(lua_State *L) {
  sf_wan_kv_reset(check_kv(L, 1));
  lua_settop(L, 1);
  return 1;
}

static int l_kv_zero(lua_State *L) {
  sf_wan_kv_zero(check_kv(L, 1));
  lua_settop(L, 1);
  return 1;
}

/* kv:detach(): forget every slot's gradient source, keep the values (LongLive's _clear_cache_gradients, and a
   zero_() under grad mode, which cuts the gradient to earlier writes) */
static int l_kv_detach(lua_State *L) {
  sf_wan_kv_clear_grad(check_kv(L, 1));
  lua_settop(L, 1);
  return 1;
}

static int l_kv_layer(lua_State *L) {
  sf_wan_kv *kv = check_kv(L, 1);
  lua_Integer i = luaL_checkinteger(L, 2);
  if (i < 0 || i >= kv->num_layers) return luaL_error(L, "kv:layer(%d): layers are 0..%d (0-based)", (int)i, kv->num_layers - 1);
  lua_createtable(L, 0, 5);
  if (kv->k[i]) {
    sf_lua_push_tensor(L, sf_narrow(kv->k[i], 1, 0, kv->local_end[i]));
    lua_setfield(L, -2, "k");
    sf_lua_push_tensor(L, sf_narrow(kv->v[i], 1, 0, kv->local_end[i]));
    lua_setfield(L, -2, "v");
  }
  lua_pushinteger(L, kv->global_end[i]), lua_setfield(L, -2, "global_end");
  lua_pushinteger(L, kv->local_end[i]), lua_setfield(L, -2, "local_end");
  lua_createtable(L, (int)kv->capacity_frames, 0);
  int n = 0;
  for (int64_t f = 0; kv->S && f < kv->local_end[i] / kv->S; f++) lua_pushinteger(L, kv->slot_frame[i][f]), lua_rawseti(L, -2, ++n);
  lua_setfield(L, -2, "frames");
  return 1;
}

static int l_kv_index(lua_State *L) {
  sf_wan_kv *kv = check_kv(L, 1);
  const char *k = luaL_checkstring(L, 2);
  if (!strcmp(k, "global_end")) return lua_pushinteger(L, kv->global_end[0]), 1;
  if (!strcmp(k, "local_end")) return lua_pushinteger(L, kv->local_end[0]), 1;
  if (!strcmp(k, "frames")) return lua_pushinteger(L, kv->capacity_frames), 1;
  if (!strcmp(k, "tokens_per_frame")) return lua_pushinteger(L, kv->S), 1;
  if (!strcmp(k, "num_layers")) return lua_pushinteger(L, kv->num_layers), 1;
  if (!strcmp(k, "reset")) return lua_pushcfunction(L, l_kv_reset), 1;
  if (!strcmp(k, "zero")) return lua_pushcfunction(L, l_kv_zero), 1;
  if (!strcmp(k, "detach")) return lua_pushcfunction(L, l_kv_detach), 1;
  if (!strcmp(k, "layer")) return lua_pushcfunction(L, l_kv_layer), 1;
  if (!strcmp(k, "policy")) {
    lua_getiuservalue(L, 1, 1);
    return 1;
  }
  if (!strcmp(k, "sink_size")) return lua_pushinteger(L, kv->sink_size), 1;
  if (!strcmp(k, "local_attn_size")) return lua_pushinteger(L, kv->local_attn_size), 1;
  if (!strcmp(k, "max_attention_frames")) return lua_pushinteger(L, kv->max_attn_frames), 1;
  return lua_pushnil(L), 1;
}

static int l_kv_gc(lua_State *L) {
  kv_ud *u = luaL_checkudata(L, 1, KV_MT);
  sf_wan_kv_free(u->kv);
  u->kv = NULL;
  return 0;
}

/* ---- cross-attention cache ---- */
static int l_xc_reset(lua_State *L) {
  sf_wan_xcache_reset(((xc_ud *)luaL_checkudata(L, 1, XC_MT))->xc);
  lua_settop(L, 1);
  return 1;
}

/* ca:zero(): the cached K/V become zeros, the layers stay initialised (LongLive's streaming switch training zeroes
   the cross-attention cache after its recache without clearing is_init, so later cached calls see zero K/V) */
static int l_xc_zero(lua_State *L) {
  if (sf_wan_xcache_zero(((xc_ud *)luaL_checkudata(L, 1, XC_MT))->xc)) return sf_lua_raise(L);
  lua_settop(L, 1);
  return 1;
}

static int l_xc_index(lua_State *L) {
  sf_wan_xcache *xc = ((xc_ud *)luaL_checkudata(L, 1, XC_MT))->xc;
  const char *k = luaL_checkstring(L, 2);
  if (!strcmp(k, "reset")) return lua_pushcfunction(L, l_xc_reset), 1;
  if (!strcmp(k, "zero")) return lua_pushcfunction(L, l_xc_zero), 1;
  if (!strcmp(k, "is_init")) return lua_pushboolean(L, xc->num_layers > 0 && xc->is_init[0]), 1;
  return lua_pushnil(L), 1;
}

static int l_xc_gc(lua_State *L) {
  xc_ud *u = luaL_checkudata(L, 1, XC_MT);
  sf_wan_xcache_free(u->xc);
  u->xc = NULL;
  return 0;
}

/* ---- capture ---- */
static sf_wan_capture *check_cap(lua_State *L, int i) { return ((cap_ud *)luaL_checkudata(L, i, CAP_MT))->c; }

static int l_cap_result(lua_State *L) {
  sf_wan_capture *c = check_cap(L, 1);
  sf_cap_query q = {-1, -1, -1, ""};
  if (lua_type(L, 2) == LUA_TTABLE) {
    q.layer = (int)opt_int(L, 2, "layer", -1);
    q.step = opt_int(L, 2, "step", -1);
    q.chunk = opt_int(L, 2, "chunk", -1);
    if (lua_getfield(L, 2, "pass") == LUA_TSTRING) snprintf(q.pass, sizeof q.pass, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  sf_cap_meta meta;
  memset(&meta, 0, sizeof meta);
  sf_tensor *A = sf_wan_capture_result(c, &q, &meta);
  if (!A) return sf_lua_raise(L);
  sf_lua_push_tensor(L, A);
  static const char *WHAT[] = {"logits", "probs", "mass"}, *RED[] = {"frame", "query_mean", "none"};
  lua_createtable(L, 0, 12);
  lua_pushinteger(L, meta.layer), lua_setfield(L, -2, "layer");
  lua_pushstring(L, WHAT[c->what]), lua_setfield(L, -2, "what");
  lua_pushstring(L, RED[c->reduce]), lua_setfield(L, -2, "reduce");
  lua_pushstring(L, c->cross ? "cross" : "self"), lua_setfield(L, -2, "attn");
  lua_pushinteger(L, meta.n_records), lua_setfield(L, -2, "n_calls");
  if (!isnan(meta.timestep)) lua_pushnumber(L, meta.timestep), lua_setfield(L, -2, "timestep");
  if (q.step >= 0) lua_pushinteger(L, q.step), lua_setfield(L, -2, "step");
  if (q.pass[0]) lua_pushstring(L, q.pass), lua_setfield(L, -2, "pass");
  /* absolute query frames that were filled, key ids 0..nk-1, chunk sizes from the filling calls */
  lua_newtable(L);
  lua_newtable(L);
  int nqf = 0, ncs = 0;
  int64_t prev = -2, run = 0;
  for (int64_t f = 0; f < meta.nq; f++) {
    int64_t ch = meta.chunk_of_frame ? meta.chunk_of_frame[f] : -1;
    lua_pushinteger(L, f), lua_rawseti(L, -3, ++nqf);
    if (ch != prev && run) lua_pushinteger(L, run), lua_rawseti(L, -2, ++ncs), run = 0;
    prev = ch, run++;
  }
  if (run) lua_pushinteger(L, run), lua_rawseti(L, -2, ++ncs);
  lua_setfield(L, -3, "chunk_sizes");
  lua_setfield(L, -2, "query_frames");
  lua_createtable(L, (int)meta.nk, 0);
  for (int64_t j = 0; j < meta.nk; j++) lua_pushinteger(L, j), lua_rawseti(L, -2, (int)j + 1);
  lua_setfield(L, -2, c->cross ? "key_tokens" : "key_frames");
  if (c->model) lua_pushstring(L, c->model->provenance), lua_setfield(L, -2, "weights");
  free(meta.chunk_of_frame);
  return 2;
}

static int l_cap_reset(lua_State *L) {
  sf_wan_capture_reset(check_cap(L, 1));
  lua_settop(L, 1);
  return 1;
}

static int l_cap_remove(lua_State *L) {
  sf_wan_capture_remove(check_cap(L, 1));
  return 0;
}

static int l_cap_gc(lua_State *L) {
  cap_ud *u = luaL_checkudata(L, 1, CAP_MT);
  sf_wan_capture_free(u->c);
  u->c = NULL;
  return 0;
}

static int l_cap_index(lua_State *L) {
  sf_wan_capture *c = check_cap(L, 1);
  const char *k = luaL_checkstring(L, 2);
  if (!strcmp(k, "result")) return lua_pushcfunction(L, l_cap_result), 1;
  if (!strcmp(k, "reset")) return lua_pushcfunction(L, l_cap_reset), 1;
  if (!strcmp(k, "remove")) return lua_pushcfunction(L, l_cap_remove), 1;
  if (!strcmp(k, "n_calls")) return lua_pushinteger(L, c->n_records), 1;
  return lua_pushnil(L), 1;
}

static void new_mt(lua_State *L, const char *name, lua_CFunction index, lua_CFunction gc) {
  luaL_newmetatable(L, name);
  lua_pushcfunction(L, index), lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, gc), lua_setfield(L, -2, "__gc");
  lua_pushstring(L, name), lua_setfield(L, -2, "__name");
}

/* metatable at -1 gets getters = {name = true, ...} (field names for completion) */
static void set_getters(lua_State *L, const char **names) {
  lua_newtable(L);
  for (int i = 0; names[i]; i++) lua_pushboolean(L, 1), lua_setfield(L, -2, names[i]);
  lua_setfield(L, -2, "getters");
}

void sf_lua_register_wan(lua_State *L) {
  new_mt(L, WAN_MT, l_model_index, l_model_gc);
  lua_pushcfunction(L, l_model_tostring), lua_setfield(L, -2, "__tostring");
  luaL_newlib(L, MODEL_METHODS);
  lua_setfield(L, -2, "methods");
  set_getters(L, (const char *[]){"config", NULL});
  lua_pop(L, 1);
  /* `methods` / `getters` tables: what the REPL's tab completion lists (lookup goes through __index) */
  new_mt(L, KV_MT, l_kv_index, l_kv_gc);
  static const luaL_Reg KV_M[] = {{"reset", l_kv_reset}, {"zero", l_kv_zero}, {"detach", l_kv_detach}, {"layer", l_kv_layer}, {NULL, NULL}};
  luaL_newlib(L, KV_M), lua_setfield(L, -2, "methods");
  set_getters(L, (const char *[]){"global_end", "local_end", "frames", "tokens_per_frame", "num_layers", "policy", "sink_size",
                                  "local_attn_size", "max_attention_frames", NULL});
  lua_pop(L, 1);
  new_mt(L, XC_MT, l_xc_index, l_xc_gc);
  static const luaL_Reg XC_M[] = {{"reset", l_xc_reset}, {"zero", l_xc_zero}, {NULL, NULL}};
  luaL_newlib(L, XC_M), lua_setfield(L, -2, "methods");
  set_getters(L, (const char *[]){"is_init", NULL});
  lua_pop(L, 1);
  new_mt(L, CAP_MT, l_cap_index, l_cap_gc);
  static const luaL_Reg CAP_M[] = {{"result", l_cap_result}, {"reset", l_cap_reset}, {"remove", l_cap_remove}, {NULL, NULL}};
  luaL_newlib(L, CAP_M), lua_setfield(L, -2, "methods");
  set_getters(L, (const char *[]){"n_calls", NULL});
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushcfunction(L, l_wan_load), lua_setfield(L, -2, "load");
  lua_pushcfunction(L, l_wan_new), lua_setfield(L, -2, "new");
  lua_setfield(L, -2, "wan");
}

/* lua_cuda_stream.c — the asynchronous side of sfwb.cuda, for timing and overlapping work on a GPU:
 *   s = sfwb.cuda.stream([dev])       a new stream (cudaStream_t, non-blocking); s.device
 *   sfwb.cuda.current_stream([dev]) / default_stream([dev])   the stream work goes to now / the device's own
 *   sfwb.cuda.set_stream(s)           make s current on its device (nil, dev: the device's own again)
 *   sfwb.cuda.with_stream(s, fn, ...) fn(...) with s current, the previous one restored even on error
 *   s:synchronize()  s:query() -> done?  s:wait_event(ev)  s:wait_stream(s2)  s:record_event([ev]) -> ev
 *   ev = sfwb.cuda.event([dev])  ev:record([s])  ev:synchronize()  ev:query()
 *   ev:elapsed_ms(ev2) (waits for ev2)                                              -- cudaEvent_t
 *   t:record_stream(s)                a device tensor also used on s: its memory is not reused before s's
 *                                     work up to the tensor's release is done (torch's record_stream)
 *   sfwb.cuda.properties([dev]) -> {name=, total_memory=, free_memory=, multiprocessors=, compute_capability=,
 *                                   shared_memory_per_block=, shared_memory_per_block_optin=}
 *   p = t:pin_memory()  p:is_pinned()        -- a CPU copy in page-locked memory (cudaMallocHost)
 *   sfwb.cuda.copy_async(dst, src [, s])     -- pinned CPU <-> device, same dtype/numel, both contiguous;
 *                                               only enqueued (on s, else the current stream): keep both
 *                                               alive until that stream is synchronized
 * Every launch, copy, GEMM, collective and allocation of the calling thread goes to the current stream of
 * its device; allocations are cached per stream (a block freed on s is reused on s only).
 * On emu:N the same calls run on the emulated runtime (work runs at issue, so queries say done; events
 * stamp the host clock; a destroyed or foreign-device handle is an error as on a GPU). */
#include <lauxlib.h>
#include <lua.h>
#include <string.h>

#include "core/backend.h"
#include "backend/cuda/gpu_api.h"
#include "core/error.h"
#include "ops/ops.h"
#include "lua/lua_tensor.h"

#define EVENT_MT "sfwb.cuda.Event"
#define STREAM_MT "sfwb.cuda.Stream"
#define CURRENT_KEY "sfwb.cuda.current_streams" /* registry: device string -> the current stream's box */

typedef struct {
  sf_gpu_event *ev;
  const sf_gpu_ext *x;
  sf_device dev;
} event_box;

/* the first GPU-like device type present (cuda, else emu): pinned memory belongs to the runtime, not a device */
static const sf_gpu_ext *any_ext(lua_State *L) {
  for (int ty = SF_DEV_CUDA; ty <= SF_DEV_EMU; ty++) {
    sf_device d = {(int8_t)ty, 0};
    const sf_backend *b = sf_backend_for(d);
    if (b && b->device_count && b->device_count() > 0) {
      const sf_gpu_ext *x = sf_gpu_ext_for((sf_devtype)ty);
      if (x) { sf_clear_error(); return x; }
    }
  }
  sf_clear_error();
  luaL_error(L, "pinned memory needs a cuda or emu device (devices: none in this build)");
  return NULL;
}

static sf_device gpu_arg(lua_State *L, int idx, const sf_gpu_ext **x) {
  sf_device d;
  if (lua_isnoneornil(L, idx)) {
    sf_device c = {SF_DEV_CUDA, 0};
    const sf_backend *b = sf_backend_for(c);
    d.type = b && b->device_count && b->device_count() > 0 ? SF_DEV_CUDA : SF_DEV_EMU;
    d.index = 0;
    sf_clear_error();
  } else if (sf_device_parse(luaL_checkstring(L, idx), &d)) {
    sf_lua_raise(L);
  }
  if (d.type == SF_DEV_CPU) luaL_argerror(L, idx, "a cuda:N or emu:N device, not cpu");
  if (!sf_backend_for(d)) sf_lua_raise(L);
  if (!(*x = sf_gpu_ext_for((sf_devtype)d.type))) sf_lua_raise(L);
  return d;
}

static event_box *new_event(lua_State *L, const sf_gpu_ext *x, sf_device d);
static event_box *check_event(lua_State *L, int idx) { return luaL_checkudata(L, idx, EVENT_MT); }

static int l_event(lua_State *L) {
  const sf_gpu_ext *x;
  sf_device d = gpu_arg(L, 1, &x);
  new_event(L, x, d);
  return 1;
}

static sf_gpu_stream *stream_arg(lua_State *L, int idx, sf_device dev); /* the stream at idx; NULL (absent) = current */

/* ev:record([s]): on s, else on the current stream of the event's device */
static int ev_record(lua_State *L) {
  event_box *b = check_event(L, 1);
  if (b->x->event_record_on(b->ev, stream_arg(L, 2, b->dev))) sf_lua_raise(L);
  lua_settop(L, 1);
  return 1;
}

static int ev_synchronize(lua_State *L) {
  event_box *b = check_event(L, 1);
  if (b->x->event_synchronize(b->ev)) sf_lua_raise(L);
  lua_settop(L, 1);
  return 1;
}

static int ev_query(lua_State *L) {
  event_box *b = check_event(L, 1);
  int r = b->x->event_query(b->ev);
  if (r < 0) sf_lua_raise(L);
  lua_pushboolean(L, r);
  return 1;
}

static int ev_elapsed(lua_State *L) {
  event_box *a = check_event(L, 1), *b = check_event(L, 2);
  if (!sf_device_eq(a->dev, b->dev)) return luaL_error(L, "event:elapsed_ms: the two events are on different devices");
  double ms = 0;
  if (a->x->event_elapsed_ms(a->ev, b->ev, &ms)) sf_lua_raise(L);
  lua_pushnumber(L, ms);
  return 1;
}

static int ev_gc(lua_State *L) {
  event_box *b = check_event(L, 1);
  if (b->ev) b->x->event_free(b->ev);
  b->ev = NULL;
  return 0;
}

/* ---- streams ---- */
typedef struct {
  sf_gpu_stream *s;
  const sf_gpu_ext *x;
  sf_device dev;
} stream_box;

static stream_box *check_stream(lua_State *L, int idx) { return luaL_checkudata(L, idx, STREAM_MT); }

static stream_box *push_stream(lua_State *L, sf_gpu_stream *s, const sf_gpu_ext *x, sf_device d) {
  stream_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->s = s, b->x = x, b->dev = d;
  luaL_setmetatable(L, STREAM_MT);
  return b;
}

static int l_stream(lua_State *L) {
  const sf_gpu_ext *x;
  sf_device d = gpu_arg(L, 1, &x);
  stream_box *b = push_stream(L, NULL, x, d);
  if (!(b->s = x->stream_new(d.index))) sf_lua_raise(L);
  return 1;
}

static int l_default_stream(lua_State *L) {
  const sf_gpu_ext *x;
  sf_device d = gpu_arg(L, 1, &x);
  sf_gpu_stream *s = x->stream_default(d.index);
  if (!s) sf_lua_raise(L);
  push_stream(L, s, x, d);
  return 1;
}

static void push_dev_key(lua_State *L, sf_device d) {
  char buf[16];
  lua_pushstring(L, sf_device_str(d, buf, sizeof buf));
}

/* the current stream of d: the box kept in the registry by set_stream (which also keeps it alive), else
 * the device's own stream */
static int current_of(lua_State *L, sf_device d, const sf_gpu_ext *x) {
  lua_getfield(L, LUA_REGISTRYINDEX, CURRENT_KEY);
  push_dev_key(L, d);
  lua_rawget(L, -2);
  lua_remove(L, -2);
  if (!lua_isnil(L, -1)) return 1;
  lua_pop(L, 1);
  sf_gpu_stream *s = x->stream_default(d.index);
  if (!s) sf_lua_raise(L);
  push_stream(L, s, x, d);
  return 1;
}

static int l_current_stream(lua_State *L) {
  const sf_gpu_ext *x;
  sf_device d = gpu_arg(L, 1, &x);
  return current_of(L, d, x);
}

/* makes the stream at idx (or the own stream of d when idx is nil) current on d */
static void set_current(lua_State *L, int idx, sf_device d, const sf_gpu_ext *x) {
  stream_box *b = lua_isnil(L, idx) ? NULL : check_stream(L, idx);
  if (b && !b->s) luaL_error(L, "set_stream: the stream was destroyed");
  if (x->stream_set_current(d.index, b && !b->s->own ? b->s : NULL)) sf_lua_raise(L);
  lua_getfield(L, LUA_REGISTRYINDEX, CURRENT_KEY);
  push_dev_key(L, d);
  if (b && !b->s->own) lua_pushvalue(L, idx); else lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

static int l_set_stream(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    const sf_gpu_ext *x;
    sf_device d = gpu_arg(L, 2, &x);
    set_current(L, 1, d, x);
    return 0;
  }
  stream_box *b = check_stream(L, 1);
  set_current(L, 1, b->dev, b->x);
  return 0;
}

/* with_stream(s, fn, ...): fn(...) with s current on its device; the previous current stream comes back
 * afterwards, also when fn raises (the error goes on) */
static int l_with_stream(lua_State *L) {
  stream_box *b = check_stream(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  int nargs = lua_gettop(L) - 2;
  current_of(L, b->dev, b->x); /* the previous one, to restore */
  int prev = lua_gettop(L);
  set_current(L, 1, b->dev, b->x);
  lua_pushvalue(L, 2);
  for (int i = 0; i < nargs; i++) lua_pushvalue(L, 3 + i);
  int rc = lua_pcall(L, nargs, LUA_MULTRET, 0);
  int nres = lua_gettop(L) - prev;
  /* restore: the previous box (the device's own is a fresh box with own = true: set_current maps it to NULL) */
  lua_pushvalue(L, prev);
  set_current(L, lua_gettop(L), b->dev, b->x);
  lua_pop(L, 1);
  if (rc != LUA_OK) return lua_error(L);
  return nres;
}

static sf_gpu_stream *stream_arg(lua_State *L, int idx, sf_device dev) {
  if (lua_isnoneornil(L, idx)) return NULL;
  stream_box *b = check_stream(L, idx);
  if (!b->s) luaL_error(L, "the stream was destroyed");
  if (!sf_device_eq(b->dev, dev)) {
    char b1[16], b2[16];
    luaL_error(L, "a stream of %s used for work on %s", sf_device_str(b->dev, b1, 16), sf_device_str(dev, b2, 16));
  }
  return b->s;
}

/* the sf_gpu_stream current on d for this Lua state (NULL = the device's own) */
static sf_gpu_stream *current_ptr(lua_State *L, sf_device d) {
  lua_getfield(L, LUA_REGISTRYINDEX, CURRENT_KEY);
  push_dev_key(L, d);
  lua_rawget(L, -2);
  stream_box *b = luaL_testudata(L, -1, STREAM_MT);
  lua_pop(L, 2);
  return b ? b->s : NULL;
}

static int st_synchronize(lua_State *L) {
  stream_box *b = check_stream(L, 1);
  if (b->x->stream_synchronize(b->s)) sf_lua_raise(L);
  lua_settop(L, 1);
  return 1;
}

static int st_query(lua_State *L) {
  stream_box *b = check_stream(L, 1);
  int r = b->x->stream_query(b->s);
  if (r < 0) sf_lua_raise(L);
  lua_pushboolean(L, r);
  return 1;
}

static event_box *check_event(lua_State *L, int idx);

static int st_wait_event(lua_State *L) {
  stream_box *b = check_stream(L, 1);
  event_box *e = check_event(L, 2);
  if (b->x->stream_wait_event(b->s, e->ev)) sf_lua_raise(L);
  lua_settop(L, 1);
  return 1;
}

static event_box *new_event(lua_State *L, const sf_gpu_ext *x, sf_device d) {
  event_box *e = lua_newuserdatauv(L, sizeof *e, 0);
  memset(e, 0, sizeof *e);
  luaL_setmetatable(L, EVENT_MT);
  if (!(e->ev = x->event_new(d.index))) sf_lua_raise(L);
  e->x = x, e->dev = d;
  return e;
}

/* s:record_event([ev]) -> ev recorded on s */
static int st_record_event(lua_State *L) {
  stream_box *b = check_stream(L, 1);
  event_box *e;
  if (lua_isnoneornil(L, 2)) e = new_event(L, b->x, b->dev);
  else e = check_event(L, 2), lua_pushvalue(L, 2);
  if (b->x->event_record_on(e->ev, b->s)) sf_lua_raise(L);
  return 1;
}

/* s:wait_stream(s2): later work on s waits for the work enqueued on s2 so far */
static int st_wait_stream(lua_State *L) {
  stream_box *b = check_stream(L, 1), *o = check_stream(L, 2);
  if (!sf_device_eq(b->dev, o->dev)) return luaL_error(L, "wait_stream: the two streams are on different devices");
  event_box *e = new_event(L, o->x, o->dev);
  if (o->x->event_record_on(e->ev, o->s) || b->x->stream_wait_event(b->s, e->ev)) sf_lua_raise(L);
  lua_settop(L, 1);
  return 1;
}

static int st_index(lua_State *L) {
  stream_box *b = check_stream(L, 1);
  const char *k = luaL_checkstring(L, 2);
  if (!strcmp(k, "device")) {
    push_dev_key(L, b->dev);
    return 1;
  }
  if (!strcmp(k, "is_default")) {
    lua_pushboolean(L, b->s && b->s->own);
    return 1;
  }
  luaL_getmetafield(L, 1, "methods");
  lua_getfield(L, -1, k);
  return 1;
}

static int st_eq(lua_State *L) {
  stream_box *a = luaL_testudata(L, 1, STREAM_MT), *b = luaL_testudata(L, 2, STREAM_MT);
  lua_pushboolean(L, a && b && a->s == b->s);
  return 1;
}

static int st_tostring(lua_State *L) {
  stream_box *b = check_stream(L, 1);
  char buf[16];
  lua_pushfstring(L, "sfwb.cuda.Stream(%s%s)", sf_device_str(b->dev, buf, sizeof buf), b->s && b->s->own ? ", default" : "");
  return 1;
}

static int st_gc(lua_State *L) {
  stream_box *b = check_stream(L, 1);
  if (b->s && !b->s->own) b->x->stream_free(b->s); /* waits for its work, hands its cache back */
  b->s = NULL;
  return 0;
}

/* t:record_stream(s) */
static int t_record_stream(lua_State *L) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  stream_box *b = check_stream(L, 2);
  sf_device d = sf_device_of(t);
  if (!sf_device_eq(d, b->dev)) {
    char b1[16], b2[16];
    return luaL_error(L, "record_stream: the tensor is on %s, the stream on %s", sf_device_str(d, b1, 16),
                      sf_device_str(b->dev, b2, 16));
  }
  if (b->x->record_stream(d.index, t->storage->data, b->s)) sf_lua_raise(L);
  lua_settop(L, 1);
  return 1;
}

static int l_properties(lua_State *L) {
  const sf_gpu_ext *x;
  sf_device d = gpu_arg(L, 1, &x);
  sf_gpu_props p;
  if (x->props(d.index, &p)) sf_lua_raise(L);
  lua_createtable(L, 0, 8);
  lua_pushstring(L, p.name), lua_setfield(L, -2, "name");
  lua_pushinteger(L, (lua_Integer)p.total_mem), lua_setfield(L, -2, "total_memory");
  lua_pushinteger(L, (lua_Integer)p.free_mem), lua_setfield(L, -2, "free_memory");
  lua_pushinteger(L, p.multiprocessors), lua_setfield(L, -2, "multiprocessors");
  lua_pushfstring(L, "%d.%d", p.cc_major, p.cc_minor), lua_setfield(L, -2, "compute_capability");
  lua_pushinteger(L, (lua_Integer)p.smem_per_block), lua_setfield(L, -2, "shared_memory_per_block");
  lua_pushinteger(L, (lua_Integer)p.smem_per_block_optin), lua_setfield(L, -2, "shared_memory_per_block_optin");
  return 1;
}

/* ---- pinned host memory: a CPU storage whose release hands the block back to the runtime ---- */
static void pinned_release(sf_storage *s) {
  const sf_gpu_ext *x = s->ctx;
  if (x && s->data) x->host_free(s->data);
}

static bool is_pinned(const sf_tensor *t) { return t->storage && t->storage->release == pinned_release; }

static int t_pin_memory(lua_State *L) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  if (sf_device_of(t).type != SF_DEV_CPU) return luaL_error(L, "pin_memory: the tensor is on %s; only cpu tensors can be pinned",
                                                           sf_device_str(sf_device_of(t), (char[16]){0}, 16));
  const sf_gpu_ext *x = any_ext(L);
  size_t nbytes = (size_t)sf_numel(t) * sf_dtype_size(t->dtype);
  void *p = x->host_alloc(nbytes);
  if (!p) return sf_lua_raise(L);
  sf_storage *s = sf_storage_wrap(sf_cpu(), p, nbytes, pinned_release, (void *)x);
  if (!s) { x->host_free(p); return sf_lua_raise(L); }
  sf_tensor *pt = sf_tensor_from_storage(s, t->dtype, t->ndim, t->shape, NULL, 0);
  sf_storage_release(s);
  if (pt && sf_copy_(pt, t)) { sf_release(pt); pt = NULL; }
  sf_lua_push_tensor(L, pt);
  return 1;
}

static int t_is_pinned(lua_State *L) {
  lua_pushboolean(L, is_pinned(sf_lua_check_tensor(L, 1)));
  return 1;
}

static bool contiguous(const sf_tensor *t) {
  int64_t st = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    if (t->shape[d] != 1 && t->stride[d] != st) return false;
    st *= t->shape[d];
  }
  return true;
}

static int l_copy_async(lua_State *L) {
  sf_tensor *dst = sf_lua_check_tensor(L, 1), *src = sf_lua_check_tensor(L, 2);
  sf_device dd = sf_device_of(dst), ds = sf_device_of(src);
  int to_device = ds.type == SF_DEV_CPU;
  sf_tensor *host = to_device ? src : dst, *dev = to_device ? dst : src;
  sf_device gd = to_device ? dd : ds;
  if (gd.type == SF_DEV_CPU || (dd.type != SF_DEV_CPU && ds.type != SF_DEV_CPU))
    return luaL_error(L, "copy_async: one tensor must be a pinned cpu tensor and the other a cuda/emu tensor");
  if (!is_pinned(host)) return luaL_error(L, "copy_async: the cpu tensor must be pinned (t:pin_memory())");
  if (dst->dtype != src->dtype || sf_numel(dst) != sf_numel(src))
    return luaL_error(L, "copy_async: dst %s[%d] and src %s[%d] differ in dtype or element count", sf_dtype_name(dst->dtype),
                      (int)sf_numel(dst), sf_dtype_name(src->dtype), (int)sf_numel(src));
  if (!contiguous(dst) || !contiguous(src)) return luaL_error(L, "copy_async: both tensors must be contiguous");
  const sf_gpu_ext *x = sf_gpu_ext_for((sf_devtype)gd.type);
  if (!x) return sf_lua_raise(L);
  size_t n = (size_t)sf_numel(src) * sf_dtype_size(src->dtype);
  sf_gpu_stream *on = stream_arg(L, 3, gd), *prev = current_ptr(L, gd);
  if (on && x->stream_set_current(gd.index, on->own ? NULL : on)) return sf_lua_raise(L);
  int rc = x->copy_async(gd.index, sf_data_ptr(dst), sf_data_ptr(src), n, to_device);
  if (on && x->stream_set_current(gd.index, prev)) rc = -1;
  if (rc) return sf_lua_raise(L);
  (void)dev;
  lua_settop(L, 1);
  return 1;
}

/* adds the functions to the sfwb.cuda table on top of the stack; Tensor gets pin_memory / is_pinned */
void sf_lua_cuda_stream_register(lua_State *L) {
  static const luaL_Reg ev_methods[] = {{"record", ev_record},   {"elapsed_ms", ev_elapsed}, {"synchronize", ev_synchronize},
                                         {"query", ev_query},     {NULL, NULL}};
  static const luaL_Reg st_methods[] = {{"synchronize", st_synchronize}, {"query", st_query},
                                         {"wait_event", st_wait_event},   {"wait_stream", st_wait_stream},
                                         {"record_event", st_record_event}, {NULL, NULL}};
  if (luaL_newmetatable(L, EVENT_MT)) {
    lua_pushcfunction(L, ev_gc), lua_setfield(L, -2, "__gc");
    luaL_newlib(L, ev_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, STREAM_MT)) {
    lua_pushcfunction(L, st_gc), lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, st_index), lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, st_eq), lua_setfield(L, -2, "__eq");
    lua_pushcfunction(L, st_tostring), lua_setfield(L, -2, "__tostring");
    luaL_newlib(L, st_methods);
    lua_setfield(L, -2, "methods");
  }
  lua_pop(L, 1);
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, CURRENT_KEY);
  lua_pushcfunction(L, l_stream), lua_setfield(L, -2, "stream");
  lua_pushcfunction(L, l_default_stream), lua_setfield(L, -2, "default_stream");
  lua_pushcfunction(L, l_current_stream), lua_setfield(L, -2, "current_stream");
  lua_pushcfunction(L, l_set_stream), lua_setfield(L, -2, "set_stream");
  lua_pushcfunction(L, l_with_stream), lua_setfield(L, -2, "with_stream");
  lua_pushcfunction(L, l_event), lua_setfield(L, -2, "event");
  lua_pushcfunction(L, l_properties), lua_setfield(L, -2, "properties");
  lua_pushcfunction(L, l_copy_async), lua_setfield(L, -2, "copy_async");
  sf_lua_tensor_add_method(L, "pin_memory", t_pin_memory);
  sf_lua_tensor_add_method(L, "is_pinned", t_is_pinned);
  sf_lua_tensor_add_method(L, "record_stream", t_record_stream);
}

/* lua_cuda_stream.c — the asynchronous side of sfwb.cuda, for timing and overlapping host work on a GPU:
 *   ev = sfwb.cuda.event([dev])  ev:record()  ev:elapsed_ms(ev2) (waits for ev2)   -- cudaEvent_t
 *   sfwb.cuda.properties([dev]) -> {name=, total_memory=, free_memory=, multiprocessors=, compute_capability=,
 *                                   shared_memory_per_block=, shared_memory_per_block_optin=}
 *   p = t:pin_memory()  p:is_pinned()        -- a CPU copy in page-locked memory (cudaMallocHost)
 *   sfwb.cuda.copy_async(dst, src)           -- pinned CPU <-> device, same dtype/numel, both contiguous;
 *                                               only enqueued: keep both alive until sfwb.cuda.synchronize(dev)
 * On emu:N the same calls run on the emulated runtime (streams in issue order, events stamp the host clock). */
#include <lauxlib.h>
#include <lua.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cuda/gpu_api.h"
#include "core/error.h"
#include "core/ops.h"
#include "lua/lua_tensor.h"

#define EVENT_MT "sfwb.cuda.Event"

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

static int l_event(lua_State *L) {
  const sf_gpu_ext *x;
  sf_device d = gpu_arg(L, 1, &x);
  event_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  luaL_setmetatable(L, EVENT_MT);
  if (!(b->ev = x->event_new(d.index))) sf_lua_raise(L);
  b->x = x, b->dev = d;
  return 1;
}

static event_box *check_event(lua_State *L, int idx) { return luaL_checkudata(L, idx, EVENT_MT); }

static int ev_record(lua_State *L) {
  event_box *b = check_event(L, 1);
  if (b->x->event_record(b->ev)) sf_lua_raise(L);
  lua_settop(L, 1);
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
  if (x->copy_async(gd.index, sf_data_ptr(dst), sf_data_ptr(src), n, to_device)) return sf_lua_raise(L);
  (void)dev;
  lua_settop(L, 1);
  return 1;
}

/* adds the functions to the sfwb.cuda table on top of the stack; Tensor gets pin_memory / is_pinned */
void sf_lua_cuda_stream_register(lua_State *L) {
  static const luaL_Reg ev_methods[] = {{"record", ev_record}, {"elapsed_ms", ev_elapsed}, {NULL, NULL}};
  if (luaL_newmetatable(L, EVENT_MT)) {
    lua_pushcfunction(L, ev_gc), lua_setfield(L, -2, "__gc");
    luaL_newlib(L, ev_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_event), lua_setfield(L, -2, "event");
  lua_pushcfunction(L, l_properties), lua_setfield(L, -2, "properties");
  lua_pushcfunction(L, l_copy_async), lua_setfield(L, -2, "copy_async");
  sf_lua_tensor_add_method(L, "pin_memory", t_pin_memory);
  sf_lua_tensor_add_method(L, "is_pinned", t_is_pinned);
}

/* lua_cuda.c — sfwb.cuda: the CUDA backend's device services for `cuda:N` and `emu:N` — caching-allocator
 * statistics (memory), empty_cache, synchronize, device counts, TF32 switch. A device argument may be
 * given as "cuda:1" / "emu:0"; the default is cuda:0 when a GPU is present, else emu:0. */
#include <lauxlib.h>
#include <lua.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cuda/gpu_api.h"
#include "core/error.h"
#include "lua/lua_tensor.h"

static int count_of(sf_devtype ty) {
  sf_device d = {(int8_t)ty, 0};
  const sf_backend *b = sf_backend_for(d);
  sf_clear_error();
  return b && b->device_count ? b->device_count() : 0;
}

static sf_device check_gpu(lua_State *L, int idx) {
  sf_device d;
  if (lua_isnoneornil(L, idx)) {
    d.type = count_of(SF_DEV_CUDA) > 0 ? SF_DEV_CUDA : SF_DEV_EMU;
    d.index = 0;
    return d;
  }
  const char *s = luaL_checkstring(L, idx);
  if (sf_device_parse(s, &d)) sf_lua_raise(L);
  if (d.type == SF_DEV_CPU) luaL_argerror(L, idx, "sfwb.cuda functions take a cuda:N or emu:N device, not cpu");
  if (!sf_backend_for(d)) sf_lua_raise(L);
  return d;
}

static const sf_gpu_ext *ext_of(lua_State *L, sf_device d) {
  const sf_gpu_ext *x = sf_gpu_ext_for((sf_devtype)d.type);
  if (!x) sf_lua_raise(L);
  return x;
}

static int l_memory(lua_State *L) {
  sf_device d = check_gpu(L, 1);
  sf_gpu_mem_stats s;
  if (ext_of(L, d)->memory(d.index, &s)) sf_lua_raise(L);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, (lua_Integer)s.allocated);
  lua_setfield(L, -2, "allocated");
  lua_pushinteger(L, (lua_Integer)s.reserved);
  lua_setfield(L, -2, "reserved");
  lua_pushinteger(L, (lua_Integer)s.peak);
  lua_setfield(L, -2, "peak");
  lua_pushinteger(L, (lua_Integer)s.cached_blocks);
  lua_setfield(L, -2, "cached_blocks");
  return 1;
}

static int l_empty_cache(lua_State *L) {
  sf_device d = check_gpu(L, 1);
  if (ext_of(L, d)->empty_cache(d.index)) sf_lua_raise(L);
  return 0;
}

static int l_reset_peak(lua_State *L) {
  sf_device d = check_gpu(L, 1);
  if (ext_of(L, d)->reset_peak(d.index)) sf_lua_raise(L);
  return 0;
}

static int l_synchronize(lua_State *L) {
  sf_device d = check_gpu(L, 1);
  if (ext_of(L, d)->synchronize(d.index)) sf_lua_raise(L);
  return 0;
}

static int l_is_available(lua_State *L) {
  lua_pushboolean(L, count_of(SF_DEV_CUDA) > 0);
  return 1;
}

static int l_device_count(lua_State *L) {
  const char *kind = luaL_optstring(L, 1, "cuda");
  lua_pushinteger(L, count_of(!strcmp(kind, "emu") ? SF_DEV_EMU : SF_DEV_CUDA));
  return 1;
}

static int l_allow_tf32(lua_State *L) {
  int on = lua_toboolean(L, 1);
  for (int ty = SF_DEV_CUDA; ty <= SF_DEV_EMU; ty++) {
    const sf_gpu_ext *x = sf_gpu_ext_for((sf_devtype)ty);
    if (x && x->set_allow_tf32) x->set_allow_tf32(on);
  }
  sf_clear_error();
  return 0;
}

void sf_lua_cuda_stream_register(lua_State *L); /* lua_cuda_stream.c: events, properties, pinned memory */

void sf_lua_register_cuda(lua_State *L) {
  static const luaL_Reg fns[] = {{"memory", l_memory},
                                 {"empty_cache", l_empty_cache},
                                 {"reset_peak_memory_stats", l_reset_peak},
                                 {"synchronize", l_synchronize},
                                 {"is_available", l_is_available},
                                 {"device_count", l_device_count},
                                 {"allow_tf32", l_allow_tf32},
                                 {NULL, NULL}};
  luaL_newlib(L, fns);
  sf_lua_cuda_stream_register(L);
  lua_setfield(L, -2, "cuda");
}

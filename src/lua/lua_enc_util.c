/* lua_enc_util.c — helpers shared by the encoder bindings (see lua_enc_util.h). */
#include "lua/lua_enc_util.h"

#include <lauxlib.h>

#include "core/error.h"
#include "ops/ops.h"
#include "lua/lua_tensor.h"

sf_tensor *sf_lua_weights_get(void *ctx, const char *name) {
  sf_lua_weights *w = ctx;
  lua_getfield(w->L, w->idx, name);
  sf_tensor *t = sf_lua_to_tensor(w->L, -1);
  lua_pop(w->L, 1); /* the table keeps the userdata (and its reference) alive */
  return t;
}

sf_tensor *sf_lua_check_cpu(lua_State *L, int idx, sf_dtype dt) {
  sf_tensor *x = sf_lua_check_tensor(L, idx);
  sf_tensor *a = sf_to_device(x, sf_cpu());
  sf_tensor *b = a ? sf_cast(a, dt) : NULL;
  sf_tensor *c = b ? sf_contiguous(b) : NULL;
  sf_release(a), sf_release(b);
  if (!c) sf_lua_raise(L);
  return c;
}

sf_device sf_lua_opt_device(lua_State *L, int idx) {
  sf_device d = sf_cpu();
  if (lua_istable(L, idx)) {
    lua_getfield(L, idx, "device");
    if (lua_isstring(L, -1) && sf_device_parse(lua_tostring(L, -1), &d)) {
      lua_pop(L, 1);
      sf_lua_raise(L);
    }
    lua_pop(L, 1);
  }
  return d;
}

/* lua_module.c — builds the `sfwb` table: each binding file adds its part through a register hook. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "backend/backend.h"

/* One hook per binding file (src/lua/lua_<part>.c). The table `sfwb` is at the top of the stack on
 * entry and must be there on exit. Weak defaults keep the program linkable while a part is absent. */
#define SF_LUA_PARTS(X) \
  X(tensor) X(autograd) X(io) X(image) X(video) X(config) X(data) X(wan) X(capture) X(tokenizer) \
  X(t5) X(vae) X(clip) X(cuda) X(dist) X(plot) X(nn) X(train) X(toy) X(fs) X(fft)
#define SF_DECLARE_PART(name) \
  __attribute__((weak)) void sf_lua_register_##name(lua_State *L) { (void)L; }
SF_LUA_PARTS(SF_DECLARE_PART)

int luaopen_sfwb_core(lua_State *L) {
  sf_backends_init();
  lua_newtable(L);
#define SF_CALL_PART(name) sf_lua_register_##name(L);
  SF_LUA_PARTS(SF_CALL_PART)
  lua_pushstring(L, SFWB_VERSION);
  lua_setfield(L, -2, "version");
  return 1;
}

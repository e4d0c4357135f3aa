/* fuzz_yaml.c — libFuzzer target: the YAML and JSON readers behind sfwb.config (libyaml events walked
 * into Lua tables: typing, anchors, aliases, merge keys; cJSON into tables), called under pcall. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>

void sf_lua_register_config(lua_State *L);

static lua_State *L;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  if (!L) {
    L = luaL_newstate();
    luaL_openlibs(L);
    lua_newtable(L);
    sf_lua_register_config(L);
    lua_setglobal(L, "sfwb");
  }
  for (int k = 0; k < 2; k++) {
    lua_getglobal(L, "sfwb");
    lua_getfield(L, -1, k ? "_json" : "_yaml");
    lua_getfield(L, -1, "parse");
    lua_pushlstring(L, (const char *)data, n);
    lua_pushliteral(L, "fuzz");
    lua_pcall(L, 2, 1, 0); /* errors are fine; crashes and leaks are not */
    lua_settop(L, 0);
  }
  lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}

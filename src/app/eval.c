/* eval.c — typed code to a Lua function the way the REPL and the notebook kernel both want it, and
 * the REPL's rendering of result values. */
#include <ctype.h>
#include <lauxlib.h>
#include <string.h>

#include "app/app.h"

static int try_load(lua_State *L, const char *code, size_t n, const char *name) {
  int status = luaL_loadbuffer(L, code, n, name);
  if (status != LUA_OK) lua_pop(L, 1);
  return status == LUA_OK;
}

int sf_eval_load(lua_State *L, const char *code, const char *chunkname, int last_expr, int *is_expr) {
  *is_expr = 0;
  const char *c = code;
  while (isspace((unsigned char)*c)) c++;
  if (*c == '=') c++; /* "= x" prints x, as Lua 5.1-5.3 */
  luaL_Buffer b;
  /* 1. the whole input as an expression (lua.c's rule) */
  lua_pushfstring(L, "return %s", c);
  int ok = try_load(L, lua_tostring(L, -1), lua_rawlen(L, -1), chunkname);
  lua_remove(L, ok ? -2 : -1);
  if (ok) {
    *is_expr = 1;
    return LUA_OK;
  }
  /* 2. statements, then an expression on the last line(s) (a notebook cell). A split counts only where
   * the statements before it compile on their own, so `return` never lands inside a block. */
  if (last_expr) {
    size_t n = strlen(code);
    while (n && isspace((unsigned char)code[n - 1])) n--;
    int tries = 0;
    for (size_t s = n; n && code[n - 1] != ';' && s > 0 && tries < 200;) {
      s--;
      while (s > 0 && code[s - 1] != '\n') s--;
      if (s == 0) break;
      tries++;
      if (!try_load(L, code, s, chunkname)) continue;
      lua_pop(L, 1);
      luaL_buffinit(L, &b);
      luaL_addlstring(&b, code, s);
      luaL_addstring(&b, "return ");
      luaL_addlstring(&b, code + s, n - s);
      luaL_pushresult(&b);
      ok = try_load(L, lua_tostring(L, -1), lua_rawlen(L, -1), chunkname);
      lua_remove(L, ok ? -2 : -1);
      if (ok) {
        *is_expr = 1;
        return LUA_OK;
      }
    }
  }
  /* 3. plain statements; a syntax error names the line as the user wrote it */
  return luaL_loadbuffer(L, code, strlen(code), chunkname);
}

int sf_eval_incomplete(lua_State *L, int status) {
  if (status != LUA_ERRSYNTAX) return 0;
  size_t n;
  const char *msg = lua_tolstring(L, -1, &n);
  return msg && n >= 5 && !strcmp(msg + n - 5, "<eof>");
}

/* pushes the one-line rendering of the table at i by lua/sfwb/show.lua; 0 (nothing pushed) if unavailable */
static int show_table(lua_State *L, int i) {
  int top = lua_gettop(L);
  lua_getglobal(L, "require");
  lua_pushstring(L, "sfwb.show");
  if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_isfunction(L, -1)) {
    lua_pushvalue(L, i);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING) return 1; /* at top + 1 */
  }
  lua_settop(L, top);
  return 0;
}

const char *sf_eval_tostring(lua_State *L, int i, size_t *len) {
  i = lua_absindex(L, i);
  /* tables print their contents ({2, 3}); everything else, tensors included, through tostring */
  if (lua_type(L, i) == LUA_TTABLE && show_table(L, i)) return lua_tolstring(L, -1, len);
  return luaL_tolstring(L, i, len);
}

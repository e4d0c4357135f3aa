/* interrupt.c — stopping a running chunk from a signal handler or another thread (Ctrl-C in the REPL,
 * SIGINT or interrupt_request in the Jupyter kernel) without losing the Lua state. */
#include <lauxlib.h>
#include <signal.h>

#include "app/app.h"
#include "core/error.h"

static volatile sig_atomic_t g_running;
static lua_State *volatile g_run_L;

/* the hook lua.c uses: raise an error at the next Lua instruction after the signal */
static void stop_hook(lua_State *L, lua_Debug *ar) {
  /* not on entry to / exit from a C function: a C op that stopped on sf_interrupted() is raising its
   * own error, and the traceback handler it calls must be allowed to run; Lua code stops next */
  if (ar->event == LUA_HOOKCALL || ar->event == LUA_HOOKRET) {
    lua_getinfo(L, "S", ar);
    if (ar->what[0] == 'C') return;
  }
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

void sf_app_run_begin(lua_State *L) {
  lua_sethook(L, NULL, 0, 0);
  g_run_L = L;
  sf_set_interrupt(0);
  g_running = 1;
}

void sf_app_run_end(lua_State *L) {
  g_running = 0;
  lua_sethook(L, NULL, 0, 0);
  sf_set_interrupt(0);
}

int sf_app_running(void) { return g_running; }

void sf_app_interrupt(void) {
  if (!g_running) return;
  /* C loops poll sf_interrupted(); Lua code stops at its next instruction (lua_sethook is the one
   * Lua API function meant to be called asynchronously) */
  sf_set_interrupt(1);
  lua_sethook(g_run_L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

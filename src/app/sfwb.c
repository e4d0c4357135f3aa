/* sfwb.c — the program: runs a script, -e code, the REPL (src/app/repl.c) or a Jupyter kernel
 * (src/app/kernel*.c) with the `sfwb` global. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <libgen.h>
#include <limits.h>

#include "app/app.h"
#include "app/kernel.h"

int luaopen_sfwb_core(lua_State *L);
/* the REPL lives in repl.c when present */
__attribute__((weak)) int sf_repl_run(lua_State *L) {
  fprintf(stderr, "sfwb: this build has no REPL\n");
  return 1;
}

static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int sf_docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  int status = lua_pcall(L, narg, nres, base);
  lua_remove(L, base);
  return status;
}

static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    fprintf(stderr, "sfwb: %s\n", lua_tostring(L, -1));
    fflush(stderr);
    lua_pop(L, 1);
  }
  return status;
}

/* package.path: <exe>/../lua (build tree), the source tree, then the installed location */
static void set_package_path(lua_State *L, const char *argv0) {
  char exe[PATH_MAX] = {0}, buf[4 * PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) snprintf(exe, sizeof exe, "%s", argv0);
  char *dir = dirname(exe);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  snprintf(buf, sizeof buf, "%s/../lua/?.lua;%s/../lua/?/init.lua;%s/lua/?.lua;%s/lua/?/init.lua;%s/?.lua;%s/?/init.lua;%s",
           dir, dir, SFWB_SOURCE_DIR, SFWB_SOURCE_DIR, SFWB_INSTALL_LUA_DIR, SFWB_INSTALL_LUA_DIR,
           lua_tostring(L, -1));
  lua_pop(L, 1);
  lua_pushstring(L, buf);
  lua_setfield(L, -2, "path");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_sfwb_core);
  lua_setfield(L, -2, "sfwb.core");
  lua_pop(L, 2);
}

static void usage(void) {
  printf("usage: sfwb [options] [script [args]]\n"
         "  -e code    run code\n"
         "  -i         enter the REPL after running script or -e\n"
         "  --version  print the version\n"
         "  --kernel CONNECTION_FILE      run as a Jupyter kernel (see docs/notebooks.md)\n"
         "  --install-kernel [--user | --prefix P]   write the Jupyter kernelspec\n"
         "  (no args)  interactive REPL\n");
}

int main(int argc, char **argv) {
  int interactive = 0, script = 0, ran = 0;
  if (argc > 1 && !strcmp(argv[1], "--install-kernel")) return sf_kernelspec_install(argc - 2, argv + 2);
  const char *kernel_conn = NULL;
  if (argc > 1 && !strcmp(argv[1], "--kernel")) {
    if (argc != 3) {
      fprintf(stderr, "sfwb: usage: sfwb --kernel CONNECTION_FILE\n");
      return 1;
    }
    kernel_conn = argv[2];
    argc = 1; /* a kernel runs no script */
  }
  for (script = 1; script < argc; script++) {
    const char *a = argv[script];
    if (a[0] != '-') break;
    if (!strcmp(a, "--version") || !strcmp(a, "-v")) { printf("sfwb %s (Lua 5.4)\n", SFWB_VERSION); return 0; }
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(); return 0; }
    if (!strcmp(a, "-i")) { interactive = 1; continue; }
    if (!strcmp(a, "-e")) { if (++script >= argc) { usage(); return 1; } continue; }
    if (!strncmp(a, "-e", 2)) continue; /* -ecode, as lua(1) */
    if (!strcmp(a, "--")) { script++; break; }
    if (!strcmp(a, "-")) break;
    fprintf(stderr, "sfwb: unknown option '%s'\n", a);
    usage();
    return 1;
  }
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  set_package_path(L, argv[0]);
  lua_getglobal(L, "require");
  lua_pushstring(L, "sfwb");
  if (report(L, sf_docall(L, 1, 1)) != LUA_OK) { lua_close(L); return 1; }
  lua_setglobal(L, "sfwb");

  /* arg table as lua(1): arg[0] = script, arg[1..] = its arguments, negatives = interpreter args */
  int base = script < argc ? script : 0;
  lua_createtable(L, argc, 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - base);
  }
  lua_setglobal(L, "arg");
  if (kernel_conn) {
    int rc = sf_kernel_run(L, kernel_conn);
    lua_close(L);
    return rc;
  }

  int status = LUA_OK;
  for (int i = 1; i < script && status == LUA_OK; i++) {
    if (!strncmp(argv[i], "-e", 2)) {
      const char *code = argv[i][2] ? argv[i] + 2 : argv[++i];
      status = luaL_loadbuffer(L, code, strlen(code), "=(command line)");
      if (status == LUA_OK) status = sf_docall(L, 0, 0);
      report(L, status);
      ran = 1;
    }
  }
  if (status == LUA_OK && script < argc) {
    const char *fname = strcmp(argv[script], "-") ? argv[script] : NULL;
    status = luaL_loadfile(L, fname);
    if (status == LUA_OK) {
      int n = argc - script - 1;
      luaL_checkstack(L, n, "too many arguments to script");
      for (int i = 0; i < n; i++) lua_pushstring(L, argv[script + 1 + i]);
      status = sf_docall(L, n, 0);
    }
    report(L, status);
    ran = 1;
  }
  /* as lua(1): with no script and no -e, a terminal gets the REPL and a pipe is run as a script */
  if (status == LUA_OK && !ran && !interactive && !isatty(0)) {
    status = luaL_loadfile(L, NULL);
    if (status == LUA_OK) status = sf_docall(L, 0, 0);
    report(L, status);
    ran = 1;
  }
  if (status == LUA_OK && (interactive || !ran)) status = sf_repl_run(L);
  lua_close(L);
  return status == LUA_OK ? 0 : 1;
}

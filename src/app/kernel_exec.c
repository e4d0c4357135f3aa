/* kernel_exec.c — execute_request: a cell runs in the kernel's one Lua state as a REPL line would (the
 * last expression shows its value), interruptible; results and `sfwb.display(...)` become rich
 * display messages (the MIME bundles come from lua/sfwb/display.lua). */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "app/kernel.h"

/* the MIME bundle table at idx -> a Jupyter `data` object; binary image types are base64-encoded */
static cJSON *bundle_to_json(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  cJSON *data = cJSON_CreateObject();
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
      const char *mime = lua_tostring(L, -2);
      size_t n;
      const char *v = lua_tolstring(L, -1, &n);
      if (!strncmp(mime, "image/", 6) && !strstr(mime, "svg")) {
        char *b = sf_base64((const unsigned char *)v, n);
        if (b) cJSON_AddStringToObject(data, mime, b);
        free(b);
      } else {
        char *s = malloc(n + 1);
        if (s) {
          memcpy(s, v, n);
          s[n] = 0;
          cJSON_AddStringToObject(data, mime, s);
          free(s);
        }
      }
    }
    lua_pop(L, 1);
  }
  return data;
}

/* sfwb.kernel.publish(bundle, {id=, update=}) — display_data (or update_display_data of display `id`) */
static int l_publish(lua_State *L) {
  sf_kernel *k = lua_touserdata(L, lua_upvalueindex(1));
  luaL_checktype(L, 1, LUA_TTABLE);
  const char *id = NULL;
  int update = 0;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "id");
    id = lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
    lua_getfield(L, 2, "update");
    update = lua_toboolean(L, -1);
    lua_pop(L, 1); /* id stays referenced by the options table */
    lua_pop(L, 1);
  }
  if (update && !id) return luaL_error(L, "display: update=true needs the id of the display to update");
  cJSON *c = cJSON_CreateObject();
  cJSON_AddItemToObject(c, "data", bundle_to_json(L, 1));
  cJSON_AddItemToObject(c, "metadata", cJSON_CreateObject());
  cJSON *tr = cJSON_AddObjectToObject(c, "transient");
  if (id) cJSON_AddStringToObject(tr, "display_id", id);
  sf_kio_flush(k); /* what the cell printed before comes first */
  sf_kio_publish(k, NULL, update ? "update_display_data" : "display_data", c);
  return 0;
}

/* sfwb.kernel.clear_output(wait) */
static int l_clear_output(lua_State *L) {
  sf_kernel *k = lua_touserdata(L, lua_upvalueindex(1));
  cJSON *c = cJSON_CreateObject();
  cJSON_AddBoolToObject(c, "wait", lua_toboolean(L, 1));
  sf_kio_flush(k);
  sf_kio_publish(k, NULL, "clear_output", c);
  return 0;
}

void sf_kexec_init(sf_kernel *k) {
  lua_State *L = k->L;
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");
  lua_newtable(L);
  lua_pushlightuserdata(L, k);
  lua_pushcclosure(L, l_publish, 1);
  lua_setfield(L, -2, "publish");
  lua_pushlightuserdata(L, k);
  lua_pushcclosure(L, l_clear_output, 1);
  lua_setfield(L, -2, "clear_output");
  lua_pushstring(L, SF_KERNEL_PROTOCOL);
  lua_setfield(L, -2, "protocol_version");
  lua_setfield(L, -2, "sfwb.kernel");
  lua_pop(L, 2);
}

/* calls require("sfwb.display")[fn] with the values on top (nargs); leaves nres results (nil on failure) */
static int call_display(lua_State *L, const char *fn, int nargs, int nres) {
  lua_getglobal(L, "require");
  lua_pushstring(L, "sfwb.display");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, fn);
  lua_remove(L, -2);
  lua_insert(L, -1 - nargs);
  lua_call(L, nargs, nres);
  return nres;
}

/* render_results(...) with upvalues k, execution count: one execute_result for the cell's values */
static int render_results(lua_State *L) {
  sf_kernel *k = lua_touserdata(L, lua_upvalueindex(1));
  int count = (int)lua_tointeger(L, lua_upvalueindex(2));
  int n = lua_gettop(L);
  cJSON *data = NULL;
  if (n == 1) {
    lua_pushvalue(L, 1);
    call_display(L, "result_bundle", 1, 1);
    if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) return 0; /* already shown (a figure) */
    if (lua_istable(L, -1)) data = bundle_to_json(L, -1);
    lua_pop(L, 1);
  }
  if (!data) data = cJSON_CreateObject();
  if (!cJSON_GetObjectItem(data, "text/plain")) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
      size_t len;
      const char *s = sf_eval_tostring(L, i, &len);
      lua_pushlstring(L, s, len);
      lua_remove(L, -2);
      if (i > 1) luaL_addchar(&b, '\t');
      luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    cJSON_AddStringToObject(data, "text/plain", lua_tostring(L, -1));
  }
  cJSON *c = cJSON_CreateObject();
  cJSON_AddNumberToObject(c, "execution_count", count);
  cJSON_AddItemToObject(c, "data", data);
  cJSON_AddItemToObject(c, "metadata", cJSON_CreateObject());
  sf_kio_flush(k);
  sf_kio_publish(k, NULL, "execute_result", c);
  return 0;
}

static cJSON *str_array_of_lines(const char *s) {
  cJSON *a = cJSON_CreateArray();
  while (s && *s) {
    const char *e = strchr(s, '\n');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    char *line = strndup(s, n);
    if (line) cJSON_AddItemToArray(a, cJSON_CreateString(line));
    free(line);
    s += n;
    if (*s == '\n') s++;
  }
  return a;
}

/* error content: ename, evalue (the message's first line), traceback (its lines) */
static void add_error(cJSON *c, const char *ename, const char *msg) {
  const char *nl = strchr(msg, '\n');
  char *first = nl ? strndup(msg, (size_t)(nl - msg)) : strdup(msg);
  cJSON_AddStringToObject(c, "ename", ename);
  cJSON_AddStringToObject(c, "evalue", first ? first : msg);
  cJSON_AddItemToObject(c, "traceback", str_array_of_lines(msg));
  free(first);
}

void sf_kexec_execute(sf_kernel *k, const sf_kmsg *req) {
  lua_State *L = k->L;
  const cJSON *cc = req->content;
  const char *code = cJSON_GetStringValue(cJSON_GetObjectItem(cc, "code"));
  if (!code) code = "";
  int silent = cJSON_IsTrue(cJSON_GetObjectItem(cc, "silent"));
  const cJSON *sh = cJSON_GetObjectItem(cc, "store_history");
  int store = !silent && (!sh || cJSON_IsTrue(sh));
  if (store) k->exec_count++;
  int count = k->exec_count;
  if (!silent) {
    cJSON *in = cJSON_CreateObject();
    cJSON_AddStringToObject(in, "code", code);
    cJSON_AddNumberToObject(in, "execution_count", count);
    sf_kio_publish(k, NULL, "execute_input", in);
  }
  int base = lua_gettop(L);
  /* a fresh cell: figures shown by this cell are not shown again as its result */
  lua_getglobal(L, "require");
  lua_pushstring(L, "sfwb.display");
  if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1)) {
    lua_getfield(L, -1, "cell_begin");
    if (lua_isfunction(L, -1)) lua_pcall(L, 0, 0, 0);
  }
  lua_settop(L, base);

  char name[48];
  snprintf(name, sizeof name, "=[cell %d]", count);
  int is_expr;
  const char *ename = "LuaError";
  int status = sf_eval_load(L, code, name, 1, &is_expr);
  if (status != LUA_OK) {
    ename = "SyntaxError";
  } else {
    sf_app_run_begin(L);
    status = sf_docall(L, 0, LUA_MULTRET);
    sf_app_run_end(L);
    int n = lua_gettop(L) - base;
    if (status == LUA_OK && n > 0 && !silent) {
      /* `_` holds the last shown value, as in the REPL */
      lua_pushvalue(L, base + 1);
      lua_setglobal(L, "_");
      luaL_checkstack(L, LUA_MINSTACK, "too many results to show");
      lua_pushlightuserdata(L, k);
      lua_pushinteger(L, count);
      lua_pushcclosure(L, render_results, 2);
      lua_insert(L, base + 1);
      sf_app_run_begin(L);
      status = sf_docall(L, n, 0);
      sf_app_run_end(L);
    }
  }
  sf_kio_flush(k);
  cJSON *reply = cJSON_CreateObject();
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    if (!msg) msg = "(error object is not a string)";
    if (strstr(msg, "interrupted!")) ename = "Interrupted";
    cJSON *err = cJSON_CreateObject();
    add_error(err, ename, msg);
    sf_kio_publish(k, NULL, "error", err);
    cJSON_AddStringToObject(reply, "status", "error");
    add_error(reply, ename, msg);
  } else {
    cJSON_AddStringToObject(reply, "status", "ok");
    cJSON_AddItemToObject(reply, "user_expressions", cJSON_CreateObject());
    cJSON_AddItemToObject(reply, "payload", cJSON_CreateArray());
  }
  cJSON_AddNumberToObject(reply, "execution_count", count);
  lua_settop(L, base);
  sf_kmsg_send(k, k->shell, req, NULL, NULL, "execute_reply", reply);
}

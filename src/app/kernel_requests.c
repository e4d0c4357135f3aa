/* kernel_requests.c — kernel_info, complete (the REPL's completer), inspect (a value's doc line from
 * lua/sfwb/doc.lua) and is_complete (the REPL's "more lines needed" rule). */
#include <ctype.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "app/kernel.h"

cJSON *sf_kreq_kernel_info(sf_kernel *k) {
  cJSON *c = cJSON_CreateObject();
  cJSON_AddStringToObject(c, "status", "ok");
  cJSON_AddStringToObject(c, "protocol_version", SF_KERNEL_PROTOCOL);
  cJSON_AddStringToObject(c, "implementation", "sfwb");
  cJSON_AddStringToObject(c, "implementation_version", SFWB_VERSION);
  cJSON *li = cJSON_AddObjectToObject(c, "language_info");
  cJSON_AddStringToObject(li, "name", "lua");
  cJSON_AddStringToObject(li, "version", LUA_VERSION_MAJOR "." LUA_VERSION_MINOR);
  cJSON_AddStringToObject(li, "mimetype", "text/x-lua");
  cJSON_AddStringToObject(li, "file_extension", ".lua");
  cJSON_AddStringToObject(li, "pygments_lexer", "lua");
  cJSON_AddStringToObject(li, "codemirror_mode", "lua");
  cJSON_AddStringToObject(c, "banner", "sfwb " SFWB_VERSION " (Lua " LUA_VERSION_MAJOR "." LUA_VERSION_MINOR
                                       ") - the Self-Forcing workbench; `sfwb` is loaded. Tab completes, "
                                       "Shift-Tab shows a doc line, Interrupt stops a long call.");
  cJSON *links = cJSON_AddArrayToObject(c, "help_links");
  cJSON *l = cJSON_CreateObject();
  cJSON_AddStringToObject(l, "text", "Lua 5.4 manual");
  cJSON_AddStringToObject(l, "url", "https://www.lua.org/manual/5.4/");
  cJSON_AddItemToArray(links, l);
  (void)k;
  return c;
}

/* cursor_pos counts unicode code points; these convert to and from byte offsets */
static size_t cp_to_byte(const char *s, long cp) {
  size_t i = 0;
  for (long c = 0; s[i] && c < cp; c++) {
    i++;
    while (((unsigned char)s[i] & 0xC0) == 0x80) i++;
  }
  return i;
}
static long byte_to_cp(const char *s, size_t b) {
  long c = 0;
  for (size_t i = 0; i < b && s[i]; i++)
    if (((unsigned char)s[i] & 0xC0) != 0x80) c++;
  return c;
}

static int name_char(char c) { return isalnum((unsigned char)c) || c == '_' || c == '.' || c == ':'; }

static size_t cursor_of(const char *code, const cJSON *content) {
  const cJSON *cp = cJSON_GetObjectItem(content, "cursor_pos");
  size_t n = strlen(code);
  if (!cJSON_IsNumber(cp)) return n;
  size_t b = cp_to_byte(code, (long)cp->valuedouble);
  return b > n ? n : b;
}

cJSON *sf_kreq_complete(sf_kernel *k, const cJSON *content) {
  const char *code = cJSON_GetStringValue(cJSON_GetObjectItem(content, "code"));
  if (!code) code = "";
  size_t end = cursor_of(code, content), start = end;
  while (start > 0 && name_char(code[start - 1])) start--;
  char *text = strndup(code + start, end - start);
  char **cands = NULL;
  size_t n = text ? sf_complete(k->L, text, &cands) : 0;
  cJSON *c = cJSON_CreateObject();
  cJSON *m = cJSON_AddArrayToObject(c, "matches");
  for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(m, cJSON_CreateString(cands[i]));
  sf_complete_free(cands, n);
  free(text);
  cJSON_AddNumberToObject(c, "cursor_start", (double)byte_to_cp(code, start));
  cJSON_AddNumberToObject(c, "cursor_end", (double)byte_to_cp(code, end));
  cJSON_AddItemToObject(c, "metadata", cJSON_CreateObject());
  cJSON_AddStringToObject(c, "status", "ok");
  return c;
}

cJSON *sf_kreq_inspect(sf_kernel *k, const cJSON *content) {
  lua_State *L = k->L;
  const char *code = cJSON_GetStringValue(cJSON_GetObjectItem(content, "code"));
  if (!code) code = "";
  size_t cur = cursor_of(code, content), start, end;
  /* the name under (or just before) the cursor; "f(|" asks about f */
  size_t at = cur;
  if (at > 0 && code[at - 1] == '(') at--;
  start = end = at;
  while (start > 0 && name_char(code[start - 1])) start--;
  while (code[end] && (isalnum((unsigned char)code[end]) || code[end] == '_')) end++;
  cJSON *c = cJSON_CreateObject();
  cJSON_AddStringToObject(c, "status", "ok");
  int found = 0;
  cJSON *data = cJSON_CreateObject();
  if (end > start) {
    int top = lua_gettop(L);
    lua_getglobal(L, "require");
    lua_pushstring(L, "sfwb.doc");
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1)) {
      lua_getfield(L, -1, "lookup");
      lua_pushlstring(L, code + start, end - start);
      const cJSON *dl = cJSON_GetObjectItem(content, "detail_level");
      lua_pushinteger(L, cJSON_IsNumber(dl) ? (lua_Integer)dl->valuedouble : 0);
      if (lua_pcall(L, 2, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING) {
        cJSON_AddStringToObject(data, "text/plain", lua_tostring(L, -1));
        found = 1;
      } else if (lua_type(L, -1) == LUA_TSTRING) {
        sf_kernel_log(k, "inspect: %s", lua_tostring(L, -1));
      }
    }
    lua_settop(L, top);
  }
  cJSON_AddBoolToObject(c, "found", found);
  cJSON_AddItemToObject(c, "data", data);
  cJSON_AddItemToObject(c, "metadata", cJSON_CreateObject());
  return c;
}

cJSON *sf_kreq_is_complete(sf_kernel *k, const cJSON *content) {
  lua_State *L = k->L;
  const char *code = cJSON_GetStringValue(cJSON_GetObjectItem(content, "code"));
  if (!code) code = "";
  int top = lua_gettop(L), is_expr;
  int status = sf_eval_load(L, code, "=is_complete", 0, &is_expr);
  cJSON *c = cJSON_CreateObject();
  if (status == LUA_OK) {
    cJSON_AddStringToObject(c, "status", "complete");
  } else if (sf_eval_incomplete(L, status)) {
    cJSON_AddStringToObject(c, "status", "incomplete");
    cJSON_AddStringToObject(c, "indent", "  ");
  } else {
    cJSON_AddStringToObject(c, "status", "invalid");
  }
  lua_settop(L, top);
  return c;
}

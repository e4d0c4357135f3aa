/* complete.c — names for Tab in the REPL and complete_request in the Jupyter kernel: global names and
 * keys of a name chain, what a value's metatable offers (methods, getters), keywords, and sfwb modules
 * that load on first use. */
#include <ctype.h>
#include <dirent.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/app.h"


static const char *const keywords[] = {"and", "break", "do", "else", "elseif", "end", "false", "for", "function",
                                       "goto", "if", "in", "local", "nil", "not", "or", "repeat", "return", "then",
                                       "true", "until", "while", NULL};

static int is_ident(const char *s, size_t n) {
  if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_')) return 0;
  for (size_t i = 1; i < n; i++)
    if (!(isalnum((unsigned char)s[i]) || s[i] == '_')) return 0;
  return 1;
}

/* adds the string keys of the table at `obj` (and what its metatable's __index / methods / getters
 * tables offer) that start with `partial` to the set at `set` */
static void add_keys(lua_State *L, int obj, const char *partial, int method, int set, int depth) {
  size_t plen = strlen(partial);
  obj = lua_absindex(L, obj);
  if (depth > 8) return;
  luaL_checkstack(L, 6, "completion");
  if (lua_type(L, obj) == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, obj)) {
      if (lua_type(L, -2) == LUA_TSTRING) {
        size_t kl;
        const char *k = lua_tolstring(L, -2, &kl);
        int callable = lua_isfunction(L, -1);
        if (!callable && luaL_getmetafield(L, -1, "__call") != LUA_TNIL) {
          callable = 1;
          lua_pop(L, 1);
        }
        if (kl >= plen && !strncmp(k, partial, plen) && is_ident(k, kl) && (!method || callable)) {
          lua_pushvalue(L, -2);
          lua_pushboolean(L, 1);
          lua_rawset(L, set);
        }
      }
      lua_pop(L, 1);
    }
  }
  if (lua_getmetatable(L, obj)) {
    int mt = lua_gettop(L);
    static const char *const fields[] = {"__index", "methods", "getters"};
    for (int i = 0; i < 3; i++) {
      if (i == 2 && method) break;
      if (lua_getfield(L, mt, fields[i]) == LUA_TTABLE) add_keys(L, -1, partial, method, set, depth + 1);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
}

/* modules that `require "<path>.<name>"` would find (sfwb.<module> loads lazily on first use) */
static void add_module_names(lua_State *L, const char *path, const char *partial, int set) {
  char mod[256];
  size_t plen = strlen(partial);
  snprintf(mod, sizeof mod, "%s", path);
  for (char *c = mod; *c; c++)
    if (*c == '.') *c = '/';
  lua_getglobal(L, "package");
  if (!lua_istable(L, -1) || lua_getfield(L, -1, "path") != LUA_TSTRING) {
    lua_settop(L, set);
    return;
  }
  const char *pp = lua_tostring(L, -1);
  while (*pp) {
    const char *e = strchr(pp, ';');
    size_t n = e ? (size_t)(e - pp) : strlen(pp);
    char tmpl[1024];
    if (n < sizeof tmpl) {
      memcpy(tmpl, pp, n);
      tmpl[n] = 0;
      char *q = strchr(tmpl, '?');
      if (q) {
        const char *suffix = q + 1; /* ".lua" or "/init.lua" */
        *q = 0;
        char dir[1400];
        snprintf(dir, sizeof dir, "%s%s", tmpl, mod);
        DIR *d = opendir(dir);
        if (d) {
          struct dirent *de;
          while ((de = readdir(d))) {
            char name[256];
            snprintf(name, sizeof name, "%s", de->d_name);
            if (!strcmp(suffix, ".lua")) {
              size_t k = strlen(name);
              if (k <= 4 || strcmp(name + k - 4, ".lua")) continue;
              name[k - 4] = 0;
              if (!strcmp(name, "init")) continue;
            } else if (suffix[0] == '/') {
              char f[1800];
              struct stat st;
              snprintf(f, sizeof f, "%s/%s%s", dir, name, suffix);
              if (stat(f, &st) != 0) continue;
            } else {
              continue;
            }
            if (!is_ident(name, strlen(name)) || strncmp(name, partial, plen)) continue;
            lua_pushstring(L, name);
            lua_pushboolean(L, 1);
            lua_rawset(L, set);
          }
          closedir(d);
        }
      }
    }
    pp += n;
    if (*pp == ';') pp++;
  }
  lua_settop(L, set);
}

/* collect(path, partial, is_method) -> set of names; runs under pcall since __index may raise */
static int collect(lua_State *L) {
  const char *path = lua_tostring(L, 1), *partial = lua_tostring(L, 2);
  int method = lua_toboolean(L, 3);
  lua_settop(L, 3);
  lua_newtable(L);
  int set = lua_gettop(L);
  lua_pushglobaltable(L);
  if (!*path) {
    add_keys(L, -1, partial, 0, set, 0);
    for (int i = 0; keywords[i]; i++) {
      if (strncmp(keywords[i], partial, strlen(partial))) continue;
      lua_pushstring(L, keywords[i]);
      lua_pushboolean(L, 1);
      lua_rawset(L, set);
    }
    lua_settop(L, set);
    return 1;
  }
  const char *p = path;
  while (*p) {
    const char *e = strchr(p, '.');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    lua_pushlstring(L, p, n);
    lua_gettable(L, -2); /* may run __index (e.g. load an sfwb module): that is what the user asks */
    lua_remove(L, -2);
    if (lua_isnil(L, -1)) {
      lua_settop(L, set);
      return 1;
    }
    p += n;
    if (*p == '.') p++;
  }
  add_keys(L, -1, partial, method, set, 0);
  if (lua_istable(L, -1) && !method) add_module_names(L, path, partial, set);
  lua_settop(L, set);
  return 1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void sf_complete_free(char **c, size_t n) {
  for (size_t i = 0; i < n; i++) free(c[i]);
  free(c);
}

size_t sf_complete(lua_State *L, const char *text, char ***out) {
  char **cands = NULL;
  size_t ncands = 0;
  *out = NULL;
  const char *sep = NULL;
  for (const char *c = text; *c; c++)
    if (*c == '.' || *c == ':') sep = c;
  size_t plen = sep ? (size_t)(sep - text) : 0;
  /* only plain name chains: a.b.c or a.b:c */
  for (const char *c = text; c < text + plen; c++)
    if (!(isalnum((unsigned char)*c) || *c == '_' || *c == '.')) return 0;
  if (sep && (plen == 0 || memchr(text, ':', plen))) return 0;
  int top = lua_gettop(L);
  lua_pushcfunction(L, collect);
  lua_pushlstring(L, text, plen);
  lua_pushstring(L, sep ? sep + 1 : text);
  lua_pushboolean(L, sep && *sep == ':');
  if (lua_pcall(L, 3, 1, 0) == LUA_OK && lua_istable(L, -1)) {
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) { n++; lua_pop(L, 1); }
    cands = (char **)calloc(n ? n : 1, sizeof(char *));
    lua_pushnil(L);
    while (cands && lua_next(L, -2)) {
      const char *k = lua_tostring(L, -2);
      char *s = (char *)malloc(plen + 1 + strlen(k) + 1);
      if (s) {
        if (sep) {
          memcpy(s, text, plen + 1);
          strcpy(s + plen + 1, k);
        } else {
          strcpy(s, k);
        }
        cands[ncands++] = s;
      }
      lua_pop(L, 1);
    }
    if (ncands) qsort(cands, ncands, sizeof(char *), cmp_str);
  }
  lua_settop(L, top);
  if (!ncands) { free(cands); cands = NULL; }
  *out = cands;
  return ncands;
}

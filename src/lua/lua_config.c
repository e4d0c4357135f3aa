/* lua_config.c — YAML (libyaml, typed as PyYAML/OmegaConf do) and JSON (cJSON) into Lua values:
 * sfwb._yaml.parse/load_file, sfwb._json.parse/load_file and the null sentinel sfwb._null, used by
 * lua/sfwb/config.lua. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "lua/lua_tensor.h"

#define NULL_KEY "sfwb.config.null"
#define YAML_BOX "sfwb.yaml.parser_box"

static void push_null(lua_State *L) { lua_getfield(L, LUA_REGISTRYINDEX, NULL_KEY); }

/* ---- implicit scalar typing: YAML 1.1 resolvers as PyYAML's SafeLoader, with OmegaConf's float
 * pattern (exponent without a dot, "1e-5", is a float) and no timestamps (OmegaConf drops them) ---- */

static regex_t re_null, re_bool, re_int, re_float;
static int re_ready;

static void compile_resolvers(void) {
  if (re_ready) return;
  regcomp(&re_null, "^(~|null|Null|NULL|)$", REG_EXTENDED | REG_NOSUB);
  regcomp(&re_bool, "^(yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$",
          REG_EXTENDED | REG_NOSUB);
  regcomp(&re_int,
          "^([-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(:[0-5]?[0-9])+)$",
          REG_EXTENDED | REG_NOSUB);
  regcomp(&re_float,
          "^([-+]?([0-9][0-9_]*)\\.[0-9_]*([eE][-+]?[0-9]+)?|[-+]?([0-9][0-9_]*)([eE][-+]?[0-9]+)|\\.[0-9_]+([eE][-+]?[0-9]+)?|"
          "[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\\.[0-9_]*|[-+]?\\.(inf|Inf|INF)|\\.(nan|NaN|NAN))$",
          REG_EXTENDED | REG_NOSUB);
  re_ready = 1;
}

static void strip_underscores(const char *s, char *out, size_t cap) {
  size_t k = 0;
  for (; *s && k + 1 < cap; s++)
    if (*s != '_') out[k++] = *s;
  out[k] = 0;
}

static void push_int(lua_State *L, const char *v) {
  char b[256];
  strip_underscores(v, b, sizeof b);
  int sign = 1;
  char *p = b;
  if (*p == '-' || *p == '+') sign = *p++ == '-' ? -1 : 1;
  long long r = 0;
  if (!strcmp(p, "0")) r = 0;
  else if (!strncmp(p, "0b", 2)) r = strtoll(p + 2, NULL, 2);
  else if (!strncmp(p, "0x", 2)) r = strtoll(p + 2, NULL, 16);
  else if (p[0] == '0') r = strtoll(p, NULL, 8);
  else if (strchr(p, ':')) { /* sexagesimal: 1:30 = 90 */
    for (char *t = strtok(p, ":"); t; t = strtok(NULL, ":")) r = r * 60 + strtoll(t, NULL, 10);
  } else r = strtoll(p, NULL, 10);
  lua_pushinteger(L, sign * r);
}

static void push_float(lua_State *L, const char *v) {
  char b[256];
  strip_underscores(v, b, sizeof b);
  for (char *q = b; *q; q++) *q = (char)(*q >= 'A' && *q <= 'Z' ? *q + 32 : *q);
  double sign = 1;
  char *p = b;
  if (*p == '-' || *p == '+') sign = *p++ == '-' ? -1 : 1;
  double r;
  if (!strcmp(p, ".inf")) r = INFINITY;
  else if (!strcmp(p, ".nan")) r = NAN;
  else if (strchr(p, ':')) {
    r = 0;
    for (char *t = strtok(p, ":"); t; t = strtok(NULL, ":")) r = r * 60 + strtod(t, NULL);
  } else r = strtod(p, NULL);
  lua_pushnumber(L, sign * r);
}

static void push_plain_scalar(lua_State *L, const char *v, size_t len) {
  compile_resolvers();
  if (len < 200 && !memchr(v, 0, len)) {
    if (!regexec(&re_bool, v, 0, NULL, 0)) {
      lua_pushboolean(L, v[0] == 'y' || v[0] == 'Y' || v[0] == 't' || v[0] == 'T' || !strcmp(v, "on") ||
                             !strcmp(v, "On") || !strcmp(v, "ON"));
      return;
    }
    if (!regexec(&re_float, v, 0, NULL, 0)) return push_float(L, v);
    if (!regexec(&re_int, v, 0, NULL, 0)) return push_int(L, v);
    if (!regexec(&re_null, v, 0, NULL, 0)) return push_null(L);
  }
  lua_pushlstring(L, v, len);
}

/* ---- the event walker ---- */

typedef struct {
  yaml_parser_t parser;
  int inited;
  const char *name;
  int anchors; /* stack index of the anchor table */
} yaml_ctx;

static int yaml_box_gc(lua_State *L) {
  yaml_ctx *c = luaL_checkudata(L, 1, YAML_BOX);
  if (c->inited) yaml_parser_delete(&c->parser);
  c->inited = 0;
  return 0;
}

static void next_event(lua_State *L, yaml_ctx *c, yaml_event_t *ev) {
  if (!yaml_parser_parse(&c->parser, ev)) {
    luaL_error(L, "%s:%d:%d: YAML error: %s%s%s", c->name, (int)c->parser.problem_mark.line + 1,
               (int)c->parser.problem_mark.column + 1, c->parser.problem ? c->parser.problem : "malformed",
               c->parser.context ? " " : "", c->parser.context ? c->parser.context : "");
  }
}

static void remember_anchor(lua_State *L, yaml_ctx *c, const yaml_char_t *anchor) {
  if (!anchor) return;
  lua_pushvalue(L, -1);
  lua_setfield(L, c->anchors, (const char *)anchor);
}

static void parse_node(lua_State *L, yaml_ctx *c, yaml_event_t *ev, int depth);

/* merge key "<<": copy keys of the map(s) on top into the mapping at `map` unless already present */
static void merge_into(lua_State *L, int map, int src) {
  lua_pushnil(L);
  while (lua_next(L, src)) {
    lua_pushvalue(L, -2);
    lua_rawget(L, map);
    int present = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (!present) {
      lua_pushvalue(L, -2);
      lua_pushvalue(L, -2);
      lua_rawset(L, map);
    }
    lua_pop(L, 1);
  }
}

static void parse_node(lua_State *L, yaml_ctx *c, yaml_event_t *ev, int depth) {
  if (depth > 200) {
    yaml_event_delete(ev);
    luaL_error(L, "%s: YAML nests deeper than 200 levels", c->name);
  }
  luaL_checkstack(L, 8, "YAML nesting");
  switch (ev->type) {
  case YAML_SCALAR_EVENT: {
    const char *v = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    if (tag && strcmp(tag, "!")) {
      if (!strcmp(tag, YAML_STR_TAG)) lua_pushlstring(L, v, len);
      else if (!strcmp(tag, YAML_INT_TAG)) push_int(L, v);
      else if (!strcmp(tag, YAML_FLOAT_TAG)) push_float(L, v);
      else if (!strcmp(tag, YAML_NULL_TAG)) push_null(L);
      else if (!strcmp(tag, YAML_BOOL_TAG)) push_plain_scalar(L, v, len);
      else lua_pushlstring(L, v, len); /* unknown tags keep the text */
    } else if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !tag) {
      push_plain_scalar(L, v, len);
    } else {
      lua_pushlstring(L, v, len);
    }
    remember_anchor(L, c, ev->data.scalar.anchor);
    yaml_event_delete(ev);
    return;
  }
  case YAML_ALIAS_EVENT:
    lua_getfield(L, c->anchors, (const char *)ev->data.alias.anchor);
    if (lua_isnil(L, -1)) {
      char a[256];
      snprintf(a, sizeof a, "%s", (const char *)ev->data.alias.anchor);
      yaml_event_delete(ev);
      luaL_error(L, "%s: YAML alias *%s refers to no anchor", c->name, a);
    }
    yaml_event_delete(ev);
    return;
  case YAML_SEQUENCE_START_EVENT: {
    char *anchor = ev->data.sequence_start.anchor ? strdup((const char *)ev->data.sequence_start.anchor) : NULL;
    yaml_event_delete(ev);
    lua_newtable(L);
    remember_anchor(L, c, (const yaml_char_t *)anchor);
    free(anchor);
    int t = lua_gettop(L);
    lua_Integer i = 0;
    for (;;) {
      next_event(L, c, ev);
      if (ev->type == YAML_SEQUENCE_END_EVENT) {
        yaml_event_delete(ev);
        return;
      }
      parse_node(L, c, ev, depth + 1);
      lua_rawseti(L, t, ++i);
    }
  }
  case YAML_MAPPING_START_EVENT: {
    char *anchor = ev->data.mapping_start.anchor ? strdup((const char *)ev->data.mapping_start.anchor) : NULL;
    yaml_event_delete(ev);
    lua_newtable(L);
    remember_anchor(L, c, (const yaml_char_t *)anchor);
    free(anchor);
    int t = lua_gettop(L);
    for (;;) {
      next_event(L, c, ev);
      if (ev->type == YAML_MAPPING_END_EVENT) {
        yaml_event_delete(ev);
        return;
      }
      int is_merge = ev->type == YAML_SCALAR_EVENT && ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                     !strcmp((const char *)ev->data.scalar.value, "<<");
      parse_node(L, c, ev, depth + 1); /* key */
      if (lua_type(L, -1) == LUA_TTABLE && !is_merge) {
        luaL_error(L, "%s: YAML mapping keys must be scalars", c->name);
      }
      int null_key = 0;
      push_null(L);
      null_key = lua_rawequal(L, -1, -2);
      lua_pop(L, 1);
      if (null_key) luaL_error(L, "%s: YAML mapping key is null", c->name);
      if (lua_type(L, -1) == LUA_TNUMBER && lua_isinteger(L, -1) == 0 && isnan(lua_tonumber(L, -1)))
        luaL_error(L, "%s: YAML mapping key is NaN", c->name);
      next_event(L, c, ev);
      parse_node(L, c, ev, depth + 1); /* value */
      if (is_merge) {
        int v = lua_gettop(L);
        if (lua_type(L, v) != LUA_TTABLE) luaL_error(L, "%s: YAML merge key << needs a mapping", c->name);
        if (lua_rawlen(L, v) > 0) { /* a list of mappings: earlier ones win */
          for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, v); i++) {
            lua_rawgeti(L, v, i);
            if (lua_type(L, -1) == LUA_TTABLE) merge_into(L, t, lua_gettop(L));
            lua_pop(L, 1);
          }
        } else {
          merge_into(L, t, v);
        }
        lua_pop(L, 2);
      } else {
        lua_rawset(L, t);
      }
    }
  }
  default:
    yaml_event_delete(ev);
    luaL_error(L, "%s: unexpected YAML event", c->name);
  }
}

/* parse a YAML text (first document); an empty document is null */
static int yaml_to_lua(lua_State *L, const char *text, size_t len, const char *name) {
  yaml_ctx *c = lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  luaL_setmetatable(L, YAML_BOX);
  if (!yaml_parser_initialize(&c->parser)) return luaL_error(L, "%s: cannot initialize libyaml", name);
  c->inited = 1;
  c->name = name;
  yaml_parser_set_input_string(&c->parser, (const unsigned char *)text, len);
  lua_newtable(L);
  c->anchors = lua_gettop(L);
  yaml_event_t ev;
  next_event(L, c, &ev); /* stream start */
  yaml_event_delete(&ev);
  next_event(L, c, &ev);
  if (ev.type == YAML_STREAM_END_EVENT) {
    yaml_event_delete(&ev);
    push_null(L);
    return 1;
  }
  yaml_event_delete(&ev); /* document start */
  next_event(L, c, &ev);
  parse_node(L, c, &ev, 0);
  return 1;
}

static int l_yaml_parse(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  const char *name = luaL_optstring(L, 2, "<string>");
  yaml_to_lua(L, s, len, name);
  return 1;
}

static char *slurp(lua_State *L, const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    luaL_error(L, "%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  char chunk[8192];
  size_t r;
  while ((r = fread(chunk, 1, sizeof chunk, f)) > 0) luaL_addlstring(&b, chunk, r);
  fclose(f);
  luaL_pushresult(&b);
  return (char *)lua_tolstring(L, -1, len);
}

static int l_yaml_load_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t len;
  const char *s = slurp(L, path, &len);
  yaml_to_lua(L, s, len, path);
  return 1;
}

/* ---- JSON ---- */

#define JSON_BOX "sfwb.json.box"
static int json_box_gc(lua_State *L) {
  cJSON **b = luaL_checkudata(L, 1, JSON_BOX);
  cJSON_Delete(*b);
  *b = NULL;
  return 0;
}

/* cJSON keeps numbers as doubles only, so integers beyond 2^53 (seeds, int64 ids) would round. The number
 * tokens of the text come in the same order as a depth-first walk of the parsed tree, so a scanner that
 * steps over strings hands each number node its own text, and integer literals are read exactly. */
typedef struct {
  const char *p, *end;
} json_numscan;

static int json_next_number(json_numscan *sc, const char **tok, size_t *n) {
  const char *p = sc->p;
  while (p < sc->end) {
    if (*p == '"') {
      for (p++; p < sc->end && *p != '"'; p++)
        if (*p == '\\') p++;
      p++;
    } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
      const char *q = p;
      while (q < sc->end && strchr("+-0123456789.eE", *q)) q++;
      *tok = p;
      *n = (size_t)(q - p);
      sc->p = q;
      return 1;
    } else p++;
  }
  sc->p = p;
  return 0;
}

static void json_push_number(lua_State *L, const cJSON *j, json_numscan *sc) {
  const char *tok;
  size_t n;
  if (json_next_number(sc, &tok, &n) && n < 32 && !memchr(tok, '.', n) && !memchr(tok, 'e', n) &&
      !memchr(tok, 'E', n)) {
    char buf[32];
    memcpy(buf, tok, n);
    buf[n] = 0;
    errno = 0;
    long long v = strtoll(buf, NULL, 10);
    if (errno == 0) {
      lua_pushinteger(L, (lua_Integer)v);
      return;
    }
  }
  double v = j->valuedouble;
  if (floor(v) == v && fabs(v) < 9007199254740992.0) lua_pushinteger(L, (lua_Integer)v);
  else lua_pushnumber(L, v);
}

static void json_push(lua_State *L, const cJSON *j, int depth, json_numscan *sc) {
  if (depth > 200) luaL_error(L, "JSON nests deeper than 200 levels");
  luaL_checkstack(L, 4, "JSON nesting");
  if (cJSON_IsNull(j)) push_null(L);
  else if (cJSON_IsBool(j)) lua_pushboolean(L, cJSON_IsTrue(j));
  else if (cJSON_IsNumber(j)) json_push_number(L, j, sc);
  else if (cJSON_IsString(j)) lua_pushstring(L, j->valuestring);
  else if (cJSON_IsArray(j)) {
    lua_newtable(L);
    lua_Integer i = 0;
    for (const cJSON *e = j->child; e; e = e->next) {
      json_push(L, e, depth + 1, sc);
      lua_rawseti(L, -2, ++i);
    }
  } else if (cJSON_IsObject(j)) {
    lua_newtable(L);
    for (const cJSON *e = j->child; e; e = e->next) {
      json_push(L, e, depth + 1, sc);
      lua_setfield(L, -2, e->string);
    }
  } else push_null(L);
}

static int json_to_lua(lua_State *L, const char *s, size_t len, const char *name) {
  cJSON **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, JSON_BOX);
  *box = cJSON_ParseWithLength(s, len);
  if (!*box) {
    const char *at = cJSON_GetErrorPtr();
    long off = at && at >= s && at <= s + len ? (long)(at - s) : -1;
    return luaL_error(L, "%s: not valid JSON (near byte %d)", name, (int)off);
  }
  json_numscan sc = {s, s + len};
  json_push(L, *box, 0, &sc);
  return 1;
}

static int l_json_parse(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  return json_to_lua(L, s, len, luaL_optstring(L, 2, "<string>"));
}

static int l_json_load_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t len;
  const char *s = slurp(L, path, &len);
  return json_to_lua(L, s, len, path);
}

static int null_tostring(lua_State *L) {
  lua_pushliteral(L, "null");
  return 1;
}

void sf_lua_register_config(lua_State *L) {
  sf_lua_gc_metatable(L, YAML_BOX, yaml_box_gc);
  sf_lua_gc_metatable(L, JSON_BOX, json_box_gc);
  /* the null sentinel: a unique, empty, read-only-by-convention table that prints as "null" */
  lua_newtable(L);
  lua_newtable(L);
  lua_pushcfunction(L, null_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, "null");
  lua_setfield(L, -2, "__name");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, NULL_KEY);
  lua_setfield(L, -2, "_null");
  lua_newtable(L);
  lua_pushcfunction(L, l_yaml_parse);
  lua_setfield(L, -2, "parse");
  lua_pushcfunction(L, l_yaml_load_file);
  lua_setfield(L, -2, "load_file");
  lua_setfield(L, -2, "_yaml");
  lua_newtable(L);
  lua_pushcfunction(L, l_json_parse);
  lua_setfield(L, -2, "parse");
  lua_pushcfunction(L, l_json_load_file);
  lua_setfield(L, -2, "load_file");
  lua_setfield(L, -2, "_json");
}

/* lua_tokenizer.c — sfwb.tokenizer: the umT5 tokenizer (SentencePiece + Wan's text cleaning, EOS,
 * padding/truncation, attention mask) as used by Wan's HuggingfaceTokenizer(seq_len=512, clean='whitespace'). */
#define _POSIX_C_SOURCE 200809L
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "ops/ops.h"
#include "io/spm_tokenizer.h"
#include "io/text_clean.h"
#include "lua/lua_tensor.h"

#define TOK_MT "sfwb.Tokenizer"

typedef struct {
  sf_spm *sp;
  int seq_len;
  int clean; /* 1 = whitespace cleaning (Wan's default), 0 = none */
  int pad_id, eos_id;
} lua_tok;

static lua_tok *check_tok(lua_State *L, int idx) {
  lua_tok *t = luaL_checkudata(L, idx, TOK_MT);
  if (!t->sp) luaL_error(L, "tokenizer is closed");
  return t;
}

static int tok_gc(lua_State *L) {
  lua_tok *t = luaL_checkudata(L, 1, TOK_MT);
  if (t->sp) sf_spm_free(t->sp);
  t->sp = NULL;
  return 0;
}

/* dir (google/umt5-xxl with spiece.model) or the .model file itself */
static int tok_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int seq_len = 512, clean = 1;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "seq_len");
    if (!lua_isnil(L, -1)) seq_len = (int)luaL_checkinteger(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 2, "clean");
    if (lua_isboolean(L, -1)) clean = lua_toboolean(L, -1);
    else if (lua_isstring(L, -1)) {
      const char *c = lua_tostring(L, -1);
      if (!strcmp(c, "whitespace")) clean = 1;
      else if (!strcmp(c, "none")) clean = 0;
      else return luaL_error(L, "tokenizer: clean='%s' is not supported (use 'whitespace' or 'none')", c);
    }
    lua_pop(L, 1);
  }
  if (seq_len < 1) return luaL_error(L, "tokenizer: seq_len must be >= 1, got %d", seq_len);
  struct stat st;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, path);
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) luaL_addstring(&b, "/spiece.model");
  luaL_pushresult(&b);
  const char *model = lua_tostring(L, -1);
  lua_tok *t = lua_newuserdatauv(L, sizeof(lua_tok), 0);
  memset(t, 0, sizeof *t);
  luaL_setmetatable(L, TOK_MT);
  t->sp = sf_spm_load(model);
  if (!t->sp) return sf_lua_raise(L);
  t->seq_len = seq_len;
  t->clean = clean;
  /* T5 conventions: <pad> and </s> pieces; fall back on the model's own ids */
  t->pad_id = sf_spm_piece_to_id(t->sp, "<pad>");
  if (t->pad_id == sf_spm_unk_id(t->sp)) t->pad_id = sf_spm_pad_id(t->sp) >= 0 ? sf_spm_pad_id(t->sp) : 0;
  t->eos_id = sf_spm_piece_to_id(t->sp, "</s>");
  if (t->eos_id == sf_spm_unk_id(t->sp)) t->eos_id = sf_spm_eos_id(t->sp);
  return 1;
}

static int tok_clean(lua_State *L) {
  check_tok(L, 1);
  char *s = sf_text_clean_whitespace(luaL_checkstring(L, 2));
  if (!s) return sf_lua_raise(L);
  lua_pushstring(L, s);
  free(s);
  return 1;
}

/* raw ids of a string: no cleaning, no EOS (Lua list) */
static int tok_ids(lua_State *L) {
  lua_tok *t = check_tok(L, 1);
  int *ids = NULL;
  int n = sf_spm_encode(t->sp, luaL_checkstring(L, 2), &ids);
  if (n < 0) return sf_lua_raise(L);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushinteger(L, ids[i]);
    lua_rawseti(L, -2, i + 1);
  }
  free(ids);
  return 1;
}

static int tok_pieces(lua_State *L) {
  lua_tok *t = check_tok(L, 1);
  char *s = sf_spm_encode_pieces(t->sp, luaL_checkstring(L, 2));
  if (!s) return sf_lua_raise(L);
  lua_newtable(L);
  int k = 1;
  char *p = s;
  if (*s) {
    for (;;) {
      char *nl = strchr(p, '\n');
      lua_pushlstring(L, p, nl ? (size_t)(nl - p) : strlen(p));
      lua_rawseti(L, -2, k++);
      if (!nl) break;
      p = nl + 1;
    }
  }
  free(s);
  return 1;
}

static int tok_decode(lua_State *L) {
  lua_tok *t = check_tok(L, 1);
  int n = 0, *ids = NULL;
  if (lua_istable(L, 2)) {
    n = (int)luaL_len(L, 2);
    ids = malloc(sizeof(int) * (n + 1));
    if (!ids) return luaL_error(L, "tokenizer: out of memory");
    for (int i = 0; i < n; i++) {
      lua_rawgeti(L, 2, i + 1);
      ids[i] = (int)lua_tointeger(L, -1);
      lua_pop(L, 1);
    }
  } else {
    sf_tensor *x = sf_lua_check_tensor(L, 2);
    sf_tensor *c = sf_cast(x, SF_I64), *cc = c ? sf_to_device(c, sf_cpu()) : NULL, *ct = cc ? sf_contiguous(cc) : NULL;
    sf_release(c), sf_release(cc);
    if (!ct) return sf_lua_raise(L);
    n = (int)sf_numel(ct);
    ids = malloc(sizeof(int) * (n + 1));
    const int64_t *d = sf_data_ptr(ct);
    for (int i = 0; ids && i < n; i++) ids[i] = (int)d[i];
    sf_release(ct);
    if (!ids) return luaL_error(L, "tokenizer: out of memory");
  }
  /* padding and EOS are not text: drop them as skip_special_tokens would */
  int m = 0;
  for (int i = 0; i < n; i++)
    if (ids[i] != t->pad_id && ids[i] != t->eos_id) ids[m++] = ids[i];
  char *s = sf_spm_decode(t->sp, ids, m);
  free(ids);
  if (!s) return sf_lua_raise(L);
  lua_pushstring(L, s);
  free(s);
  return 1;
}

/* tok:encode(text_or_list, {max_length=, clean=, add_special_tokens=}) -> ids i64 [B, L], mask i64 [B, L]
 * L = max_length (default seq_len): ids[:L-1] ++ EOS, then <pad>; the mask marks text and EOS. */
static int tok_encode(lua_State *L) {
  lua_tok *t = check_tok(L, 1);
  int L_ = t->seq_len, clean = t->clean, add_special = 1;
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "max_length");
    if (!lua_isnil(L, -1)) L_ = (int)luaL_checkinteger(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 3, "clean");
    if (!lua_isnil(L, -1)) clean = lua_isstring(L, -1) ? strcmp(lua_tostring(L, -1), "none") != 0 : lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 3, "add_special_tokens");
    if (!lua_isnil(L, -1)) add_special = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  if (L_ < 1) return luaL_error(L, "tokenizer: max_length must be >= 1, got %d", L_);
  int B;
  if (lua_type(L, 2) == LUA_TSTRING) B = 1;
  else {
    luaL_checktype(L, 2, LUA_TTABLE);
    B = (int)luaL_len(L, 2);
    if (B < 1) return luaL_error(L, "tokenizer: empty list of texts");
  }
  int64_t shape[2] = {B, L_};
  sf_tensor *ids = sf_zeros(2, shape, SF_I64, sf_cpu());
  sf_tensor *mask = ids ? sf_zeros(2, shape, SF_I64, sf_cpu()) : NULL;
  if (!mask) { sf_release(ids); return sf_lua_raise(L); }
  int64_t *pi = sf_data_ptr(ids), *pm = sf_data_ptr(mask);
  for (int b = 0; b < B; b++) {
    const char *text;
    if (lua_type(L, 2) == LUA_TSTRING) text = lua_tostring(L, 2);
    else {
      lua_rawgeti(L, 2, b + 1);
      text = lua_tostring(L, -1);
      lua_pop(L, 1); /* the string stays alive in the table */
      if (!text) { sf_release(ids), sf_release(mask); return luaL_error(L, "tokenizer: text %d is not a string", b + 1); }
    }
    char *cleaned = clean ? sf_text_clean_whitespace(text) : strdup(text);
    int *tk = NULL;
    int n = cleaned ? sf_spm_encode(t->sp, cleaned, &tk) : -1;
    free(cleaned);
    if (n < 0) { sf_release(ids), sf_release(mask); return sf_lua_raise(L); }
    int keep = add_special ? (n < L_ - 1 ? n : L_ - 1) : (n < L_ ? n : L_);
    for (int j = 0; j < L_; j++) {
      int64_t v = t->pad_id, m = 0;
      if (j < keep) v = tk[j], m = 1;
      else if (add_special && j == keep) v = t->eos_id, m = 1;
      pi[(int64_t)b * L_ + j] = v;
      pm[(int64_t)b * L_ + j] = m;
    }
    free(tk);
  }
  sf_lua_push_tensor(L, ids);
  sf_lua_push_tensor(L, mask);
  return 2;
}

static int tok_index(lua_State *L) {
  lua_tok *t = check_tok(L, 1);
  const char *k = luaL_checkstring(L, 2);
  if (!strcmp(k, "vocab_size")) lua_pushinteger(L, sf_spm_vocab_size(t->sp));
  else if (!strcmp(k, "pad_id")) lua_pushinteger(L, t->pad_id);
  else if (!strcmp(k, "eos_id")) lua_pushinteger(L, t->eos_id);
  else if (!strcmp(k, "unk_id")) lua_pushinteger(L, sf_spm_unk_id(t->sp));
  else if (!strcmp(k, "seq_len")) lua_pushinteger(L, t->seq_len);
  else {
    luaL_getmetatable(L, TOK_MT);
    lua_getfield(L, -1, "methods");
    lua_getfield(L, -1, k);
  }
  return 1;
}

static int tok_tostring(lua_State *L) {
  lua_tok *t = check_tok(L, 1);
  lua_pushfstring(L, "sfwb.Tokenizer(vocab=%d, seq_len=%d, pad=%d, eos=%d)", sf_spm_vocab_size(t->sp), t->seq_len,
                  t->pad_id, t->eos_id);
  return 1;
}

void sf_lua_register_tokenizer(lua_State *L) {
  static const luaL_Reg methods[] = {{"encode", tok_encode}, {"clean", tok_clean}, {"ids", tok_ids},
                                     {"pieces", tok_pieces}, {"decode", tok_decode}, {NULL, NULL}};
  if (luaL_newmetatable(L, TOK_MT)) {
    lua_pushcfunction(L, tok_gc), lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, tok_index), lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, tok_tostring), lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, tok_encode), lua_setfield(L, -2, "__call");
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "methods");
  }
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushcfunction(L, tok_load);
  lua_setfield(L, -2, "load");
  lua_setfield(L, -2, "tokenizer");
}

/* repl.c — the interactive sfwb prompt: readline editing, history, completion, auto-print with `_`, Ctrl-C. */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "core/error.h"

int sf_docall(lua_State *L, int narg, int nres); /* sfwb.c: pcall with a traceback handler */

#define PROMPT "sfwb> "
#define PROMPT2 "  >> "
#define HISTORY_MAX 1000

static lua_State *g_L;                  /* for the completion callbacks */
static volatile sig_atomic_t g_sigint;  /* Ctrl-C seen at the prompt */
static volatile sig_atomic_t g_running; /* a chunk is executing */
static volatile sig_atomic_t g_hits;    /* Ctrl-C presses during the current chunk */
static lua_State *volatile g_run_L;

/* ---------------------------------------------------------------- Ctrl-C */

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

static void on_sigint(int sig) {
  if (g_running) {
    /* stop the Lua code at its next instruction and ask C loops (which poll sf_interrupted) to stop;
     * a third Ctrl-C during one call means something does not listen: fall back to the default action */
    if (++g_hits >= 3) {
      signal(sig, SIG_DFL);
      raise(sig);
      return;
    }
    sf_set_interrupt(1);
    lua_sethook(g_run_L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
  } else {
    g_sigint = 1;
  }
}

static void install_sigint(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0; /* no SA_RESTART: select() at the prompt must return EINTR */
  sigaction(SIGINT, &sa, NULL);
}

/* ---------------------------------------------------------------- reading lines */

static int g_tty;
static char *g_line;
static int g_line_done;

static void on_line(char *line) {
  g_line = line;
  g_line_done = 1;
  rl_callback_handler_remove();
}

/* one line (malloc'ed, no newline); NULL at EOF. *interrupted is set on Ctrl-C (returns NULL). */
static char *read_line(const char *prompt, int *interrupted) {
  *interrupted = 0;
  if (!g_tty) {
    fputs(prompt, stdout);
    fflush(stdout);
    char buf[8192];
    size_t cap = 0, n = 0;
    char *s = NULL;
    while (fgets(buf, sizeof buf, stdin)) {
      size_t k = strlen(buf);
      char *p = (char *)realloc(s, cap = n + k + 1);
      if (!p) break;
      s = p;
      memcpy(s + n, buf, k + 1);
      n += k;
      if (n && s[n - 1] == '\n') { s[--n] = 0; return s; }
    }
    return s; /* last line without newline, or NULL at EOF */
  }
  g_line = NULL;
  g_line_done = 0;
  g_sigint = 0;
  /* SIGINT is blocked except inside pselect, so a Ctrl-C is never lost between two waits */
  sigset_t block, orig;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigprocmask(SIG_BLOCK, &block, &orig);
  rl_callback_handler_install(prompt, on_line);
  while (!g_line_done) {
    if (g_sigint) {
      g_sigint = 0;
      rl_replace_line("", 0);
      rl_callback_sigcleanup();
      rl_callback_handler_remove();
      fputs("^C\n", stdout);
      fflush(stdout);
      *interrupted = 1;
      sigprocmask(SIG_SETMASK, &orig, NULL);
      return NULL;
    }
    fd_set fds;
    FD_ZERO(&fds);
    FD_SET(fileno(rl_instream), &fds);
    int r = pselect(fileno(rl_instream) + 1, &fds, NULL, NULL, NULL, &orig);
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    rl_callback_read_char();
  }
  if (!g_line_done) rl_callback_handler_remove();
  sigprocmask(SIG_SETMASK, &orig, NULL);
  return g_line;
}

/* ---------------------------------------------------------------- history */

static char g_hist_path[4096];

static void history_open(void) {
  const char *p = getenv("SFWB_HISTORY");
  const char *home = getenv("HOME");
  if (p && *p) snprintf(g_hist_path, sizeof g_hist_path, "%s", p);
  else if (home && *home) snprintf(g_hist_path, sizeof g_hist_path, "%s/.sfwb_history", home);
  else return;
  using_history();
  stifle_history(HISTORY_MAX);
  if (read_history(g_hist_path) != 0) {
    FILE *f = fopen(g_hist_path, "a"); /* append_history needs the file to exist */
    if (f) fclose(f);
  }
}

static void history_save(const char *chunk) {
  if (!g_tty || !*chunk) return;
  HIST_ENTRY *last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
  if (last && !strcmp(last->line, chunk)) return;
  add_history(chunk);
  if (g_hist_path[0]) append_history(1, g_hist_path); /* line by line: a crash keeps the history */
}

static void history_close(void) {
  if (g_tty && g_hist_path[0]) history_truncate_file(g_hist_path, HISTORY_MAX);
}

/* ---------------------------------------------------------------- completion */

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

static char **g_cands;
static size_t g_ncands;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char *cand_generator(const char *text, int state) {
  static size_t i;
  (void)text;
  if (!state) i = 0;
  return i < g_ncands ? strdup(g_cands[i++]) : NULL;
}

static void gather(const char *text) {
  for (size_t i = 0; i < g_ncands; i++) free(g_cands[i]);
  free(g_cands);
  g_cands = NULL;
  g_ncands = 0;
  const char *sep = NULL;
  for (const char *c = text; *c; c++)
    if (*c == '.' || *c == ':') sep = c;
  size_t plen = sep ? (size_t)(sep - text) : 0;
  /* only plain name chains: a.b.c or a.b:c */
  for (const char *c = text; c < text + plen; c++)
    if (!(isalnum((unsigned char)*c) || *c == '_' || *c == '.')) return;
  if (sep && (plen == 0 || memchr(text, ':', plen))) return;
  lua_State *L = g_L;
  int top = lua_gettop(L);
  lua_pushcfunction(L, collect);
  lua_pushlstring(L, text, plen);
  lua_pushstring(L, sep ? sep + 1 : text);
  lua_pushboolean(L, sep && *sep == ':');
  if (lua_pcall(L, 3, 1, 0) == LUA_OK && lua_istable(L, -1)) {
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) { n++; lua_pop(L, 1); }
    g_cands = (char **)calloc(n ? n : 1, sizeof(char *));
    lua_pushnil(L);
    while (g_cands && lua_next(L, -2)) {
      const char *k = lua_tostring(L, -2);
      char *s = (char *)malloc(plen + 1 + strlen(k) + 1);
      if (s) {
        if (sep) {
          memcpy(s, text, plen + 1);
          strcpy(s + plen + 1, k);
        } else {
          strcpy(s, k);
        }
        g_cands[g_ncands++] = s;
      }
      lua_pop(L, 1);
    }
    if (g_ncands) qsort(g_cands, g_ncands, sizeof(char *), cmp_str);
  }
  lua_settop(L, top);
}

static char **complete(const char *text, int start, int end) {
  (void)start;
  (void)end;
  rl_attempted_completion_over = 1; /* never fall back to file names */
  rl_completion_append_character = '\0';
  gather(text);
  return rl_completion_matches(text, cand_generator);
}

/* ---------------------------------------------------------------- evaluating */

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

static int print_results(lua_State *L) {
  int n = lua_gettop(L);
  for (int i = 1; i <= n; i++) {
    size_t len;
    const char *s;
    /* tables print their contents ({2, 3}); everything else, tensors included, through tostring */
    if (lua_type(L, i) == LUA_TTABLE && show_table(L, i)) s = lua_tolstring(L, -1, &len);
    else s = luaL_tolstring(L, i, &len);
    if (i > 1) fputc('\t', stdout);
    fwrite(s, 1, len, stdout);
    lua_pop(L, 1);
  }
  fputc('\n', stdout);
  fflush(stdout);
  return 0;
}

static int incomplete(lua_State *L, int status) {
  if (status != LUA_ERRSYNTAX) return 0;
  size_t n;
  const char *msg = lua_tolstring(L, -1, &n);
  return msg && n >= 5 && !strcmp(msg + n - 5, "<eof>");
}

static void report_error(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "%s\n", msg ? msg : "(error object is not a string)");
  fflush(stderr);
  lua_pop(L, 1);
}

/* runs the function on top of the stack with Ctrl-C armed; prints results or the error */
static void run_chunk(lua_State *L) {
  int base = lua_gettop(L) - 1;
  g_hits = 0;
  g_run_L = L;
  sf_set_interrupt(0);
  g_running = 1;
  int status = sf_docall(L, 0, LUA_MULTRET);
  g_running = 0;
  lua_sethook(L, NULL, 0, 0);
  sf_set_interrupt(0);
  if (status != LUA_OK) {
    report_error(L);
    return;
  }
  int n = lua_gettop(L) - base;
  if (n > 0) {
    /* `_` holds the last printed value (its first result), as Python's REPL: `t = _` after a long call */
    lua_pushvalue(L, base + 1);
    lua_setglobal(L, "_");
    luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
    lua_pushcfunction(L, print_results);
    lua_insert(L, base + 1);
    g_running = 1;
    if (sf_docall(L, n, 0) != LUA_OK) report_error(L);
    g_running = 0;
    lua_sethook(L, NULL, 0, 0);
    sf_set_interrupt(0);
  }
  lua_settop(L, base);
}

/* reads one complete chunk (as lua.c: `return <line>` first, then more lines while incomplete) and
 * leaves its compiled function on the stack; returns 0 at EOF, -1 when the input was discarded */
static int load_chunk(lua_State *L, char **chunk_out) {
  int intr;
  char *line = read_line(PROMPT, &intr);
  if (intr) return -1;
  if (!line) return 0;
  const char *code = line;
  while (isspace((unsigned char)*code)) code++;
  if (*code == '=') code++; /* "= x" prints x, as Lua 5.1-5.3 */
  const char *ret = lua_pushfstring(L, "return %s", code);
  int status = luaL_loadbuffer(L, ret, strlen(ret), "=stdin");
  lua_remove(L, -2);
  if (status == LUA_OK) {
    *chunk_out = line;
    return 1;
  }
  lua_pop(L, 1);
  char *chunk = strdup(line);
  free(line);
  for (;;) {
    status = luaL_loadbuffer(L, chunk, strlen(chunk), "=stdin");
    if (!incomplete(L, status)) break;
    lua_pop(L, 1);
    char *more = read_line(PROMPT2, &intr);
    if (intr || !more) { /* Ctrl-C or EOF inside a multi-line chunk drops it */
      free(chunk);
      free(more);
      return intr ? -1 : 0;
    }
    char *joined = (char *)malloc(strlen(chunk) + strlen(more) + 2);
    if (!joined) { free(chunk); free(more); return -1; }
    sprintf(joined, "%s\n%s", chunk, more);
    free(chunk);
    free(more);
    chunk = joined;
  }
  *chunk_out = chunk;
  if (status != LUA_OK) {
    history_save(chunk);
    report_error(L);
    free(chunk);
    *chunk_out = NULL;
    return -1;
  }
  return 1;
}

int sf_repl_run(lua_State *L) {
  g_L = L;
  g_tty = isatty(0) && isatty(1);
  if (g_tty) {
    rl_readline_name = "sfwb";
    rl_attempted_completion_function = complete;
    rl_completer_word_break_characters = " \t\n\"\\'`@$><=;|&{(,+-*/%^~#[])}";
    rl_catch_signals = 0; /* SIGINT is ours (see read_line) */
    rl_variable_bind("show-all-if-ambiguous", "on"); /* list candidates on the first TAB (~/.inputrc may override) */
    history_open();
    lua_getglobal(L, "sfwb");
    const char *v = "";
    if (lua_istable(L, -1) && lua_getfield(L, -1, "version") == LUA_TSTRING) v = lua_tostring(L, -1);
    printf("sfwb %s (Lua 5.4) - the Self-Forcing workbench. Tab completes, Ctrl-C interrupts, Ctrl-D exits.\n", v);
    lua_settop(L, 0);
  }
  struct sigaction old;
  sigaction(SIGINT, NULL, &old);
  install_sigint();
  for (;;) {
    char *chunk = NULL;
    int r = load_chunk(L, &chunk);
    if (r == 0) break;
    if (r < 0) continue;
    history_save(chunk);
    free(chunk);
    run_chunk(L);
  }
  if (g_tty) fputc('\n', stdout);
  fflush(stdout);
  history_close();
  sigaction(SIGINT, &old, NULL);
  return LUA_OK;
}

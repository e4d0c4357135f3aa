/* repl.c — the interactive sfwb prompt: readline editing, history, completion, auto-print with `_`, Ctrl-C. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "app/app.h"
#include "core/error.h"


#define PROMPT "sfwb> "
#define PROMPT2 "  >> "
#define HISTORY_MAX 1000

static lua_State *g_L;                  /* for the completion callbacks */
static volatile sig_atomic_t g_sigint;  /* Ctrl-C seen at the prompt */
static volatile sig_atomic_t g_hits;    /* Ctrl-C presses during the current chunk */

/* ---------------------------------------------------------------- Ctrl-C (interrupt.c) */

static void on_sigint(int sig) {
  if (sf_app_running()) {
    /* a third Ctrl-C during one call means something does not listen: fall back to the default action */
    if (++g_hits >= 3) {
      signal(sig, SIG_DFL);
      raise(sig);
      return;
    }
    sf_app_interrupt();
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

/* ---------------------------------------------------------------- completion (complete.c) */

static char **g_cands;
static size_t g_ncands;

static char *cand_generator(const char *text, int state) {
  static size_t i;
  (void)text;
  if (!state) i = 0;
  return i < g_ncands ? strdup(g_cands[i++]) : NULL;
}

static void gather(const char *text) {
  sf_complete_free(g_cands, g_ncands);
  g_ncands = sf_complete(g_L, text, &g_cands);
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

static int print_results(lua_State *L) {
  int n = lua_gettop(L);
  for (int i = 1; i <= n; i++) {
    size_t len;
    const char *s = sf_eval_tostring(L, i, &len);
    if (i > 1) fputc('\t', stdout);
    fwrite(s, 1, len, stdout);
    lua_pop(L, 1);
  }
  fputc('\n', stdout);
  fflush(stdout);
  return 0;
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
  sf_app_run_begin(L);
  int status = sf_docall(L, 0, LUA_MULTRET);
  sf_app_run_end(L);
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
    sf_app_run_begin(L);
    if (sf_docall(L, n, 0) != LUA_OK) report_error(L);
    sf_app_run_end(L);
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
  int is_expr, status = sf_eval_load(L, line, "=stdin", 0, &is_expr);
  if (status == LUA_OK && is_expr) {
    *chunk_out = line;
    return 1;
  }
  lua_pop(L, 1);
  char *chunk = strdup(line);
  free(line);
  for (;;) {
    status = luaL_loadbuffer(L, chunk, strlen(chunk), "=stdin");
    if (!sf_eval_incomplete(L, status)) break;
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

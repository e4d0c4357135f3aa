/* app.h — what the program's front ends (script runner, REPL, Jupyter kernel) share: the traceback
 * pcall, interruptible runs, compiling typed code the REPL way, rendering results, completion. */
#ifndef SF_APP_H
#define SF_APP_H

#include <lua.h>
#include <stddef.h>

/* sfwb.c: pcall with a traceback message handler */
int sf_docall(lua_State *L, int narg, int nres);
/* sfwb.c: package.path and the sfwb global in a fresh state; returns LUA_OK or prints why not */
int sf_app_open(lua_State *L, const char *argv0);

/* interrupt.c: a run that Ctrl-C / a Jupyter interrupt can stop at the next Lua instruction (and C
 * loops that poll sf_interrupted()); the session survives. sf_app_interrupt is async-signal-safe. */
void sf_app_run_begin(lua_State *L);
void sf_app_run_end(lua_State *L);
int sf_app_running(void);
void sf_app_interrupt(void);

/* eval.c: compiles typed code and leaves the function (or the error message) on the stack.
 * As lua.c, "return <code>" first so a bare expression shows its value (a leading '=' is dropped);
 * with last_expr, a multi-line chunk whose last line is an expression returns it (as a notebook cell;
 * a trailing ';' keeps it quiet). *is_expr tells whether results are to be shown. */
int sf_eval_load(lua_State *L, const char *code, const char *chunkname, int last_expr, int *is_expr);
/* status is a syntax error because the input ended early (more lines would complete it) */
int sf_eval_incomplete(lua_State *L, int status);
/* pushes the REPL's rendering of the value at i: tables by lua/sfwb/show.lua, the rest by tostring */
const char *sf_eval_tostring(lua_State *L, int i, size_t *len);

/* complete.c: completion candidates for a name chain "a.b.c" / "a.b:c" / "ab" (global names, keys,
 * metatable methods, keywords, not-yet-loaded sfwb modules); sorted, malloc'ed; free with
 * sf_complete_free. Returns the count (0 with *out NULL when none). */
size_t sf_complete(lua_State *L, const char *text, char ***out);
void sf_complete_free(char **c, size_t n);

#endif

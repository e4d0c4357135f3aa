/* error.h — thread-local error messages: C functions return NULL/-1 and set one; Lua raises it. */
#ifndef SF_ERROR_H
#define SF_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* printf-style; returns -1 so callers can `return sf_error(...)` */
int sf_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *sf_last_error(void);       /* "" when none */
void sf_clear_error(void);
/* prefix the current message with context, e.g. "loading x.safetensors: " */
void sf_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* cooperative interruption (Ctrl-C in the REPL): long loops poll sf_interrupted() and fail cleanly */
void sf_set_interrupt(int on);
int sf_interrupted(void);

#ifdef __cplusplus
}
#endif
#endif

/* error.c — thread-local error message and the cooperative interrupt flag. */
#include "core/error.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char g_msg[2048];
static volatile sig_atomic_t g_interrupt;

int sf_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_msg, sizeof g_msg, fmt, ap);
  va_end(ap);
  return -1;
}

const char *sf_last_error(void) { return g_msg; }
void sf_clear_error(void) { g_msg[0] = 0; }

void sf_error_prefix(const char *fmt, ...) {
  char pre[1024], old[sizeof g_msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(pre, sizeof pre, fmt, ap);
  va_end(ap);
  memcpy(old, g_msg, sizeof old);
  snprintf(g_msg, sizeof g_msg, "%.1000s%.1000s", pre, old);
}

void sf_set_interrupt(int on) { g_interrupt = on; }
int sf_interrupted(void) { return g_interrupt; }

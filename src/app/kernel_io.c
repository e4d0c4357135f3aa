/* kernel_io.c — the kernel's output: stdout and stderr of the whole process (Lua's print, C progress
 * lines) go through pipes to a reader thread that publishes them as `stream` messages, and every iopub
 * message goes out under one mutex so threads never interleave frames. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/kernel.h"

static int g_rd[2] = {-1, -1};          /* read ends of the stdout / stderr pipes */
static int g_wake[2] = {-1, -1};        /* wakes the reader to stop */
static char g_carry[2][4];               /* an incomplete UTF-8 sequence held for the next read */
static int g_ncarry[2];
static pthread_t g_thread;
static int g_started;

void sf_kio_publish(sf_kernel *k, const cJSON *parent, const char *msg_type, cJSON *content) {
  char topic[64];
  snprintf(topic, sizeof topic, "kernel.%.8s.%s", k->session, msg_type);
  pthread_mutex_lock(&k->iopub_mu);
  sf_kmsg_send(k, k->iopub, NULL, parent ? parent : k->cur_parent, topic, msg_type, content);
  pthread_mutex_unlock(&k->iopub_mu);
}

void sf_kio_status(sf_kernel *k, const cJSON *parent, const char *state) {
  cJSON *c = cJSON_CreateObject();
  cJSON_AddStringToObject(c, "execution_state", state);
  sf_kio_publish(k, parent, "status", c);
}

void sf_kio_set_parent(sf_kernel *k, const cJSON *header) {
  pthread_mutex_lock(&k->iopub_mu);
  cJSON_Delete(k->cur_parent);
  k->cur_parent = header ? cJSON_Duplicate(header, 1) : NULL;
  pthread_mutex_unlock(&k->iopub_mu);
}

/* length of the longest prefix of p[0..n) that does not end inside a UTF-8 sequence */
static size_t utf8_complete(const char *p, size_t n) {
  size_t i = n, back = 0;
  while (i > 0 && back < 4 && ((unsigned char)p[i - 1] & 0xC0) == 0x80) i--, back++;
  if (i == 0) return n;
  unsigned char lead = (unsigned char)p[i - 1];
  size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
  return (n - (i - 1) < need) ? i - 1 : n;
}

/* reads what pipe s holds now and publishes it; the caller holds iopub_mu. Returns bytes read. */
static ssize_t drain_locked(sf_kernel *k, int s) {
  char buf[65536 + 4];
  memcpy(buf, g_carry[s], g_ncarry[s]);
  ssize_t r = read(g_rd[s], buf + g_ncarry[s], 65536);
  if (r <= 0) return r;
  size_t n = g_ncarry[s] + (size_t)r;
  size_t ok = utf8_complete(buf, n);
  g_ncarry[s] = (int)(n - ok);
  memcpy(g_carry[s], buf + ok, n - ok);
  if (ok) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "name", s ? "stderr" : "stdout");
    char *text = strndup(buf, ok);
    cJSON_AddStringToObject(c, "text", text ? text : "");
    free(text);
    char topic[64];
    snprintf(topic, sizeof topic, "kernel.%.8s.stream", k->session);
    sf_kmsg_send(k, k->iopub, NULL, k->cur_parent, topic, "stream", c);
  }
  return r;
}

static void *reader(void *arg) {
  sf_kernel *k = arg;
  for (;;) {
    struct pollfd p[3] = {{g_rd[0], POLLIN, 0}, {g_rd[1], POLLIN, 0}, {g_wake[0], POLLIN, 0}};
    if (poll(p, 3, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[2].revents) break;
    for (int s = 0; s < 2; s++) {
      if (!(p[s].revents & (POLLIN | POLLHUP))) continue;
      pthread_mutex_lock(&k->iopub_mu);
      drain_locked(k, s); /* EAGAIN when sf_kio_flush got there first */
      pthread_mutex_unlock(&k->iopub_mu);
    }
  }
  return NULL;
}

void sf_kio_flush(sf_kernel *k) {
  if (!g_started) return;
  fflush(stdout);
  fflush(stderr);
  /* whatever the reader has not taken yet is published here, under the same mutex, so it is on the
   * wire before the reply / result that follows */
  pthread_mutex_lock(&k->iopub_mu);
  for (int s = 0; s < 2; s++)
    while (drain_locked(k, s) > 0) {}
  pthread_mutex_unlock(&k->iopub_mu);
}

int sf_kio_start(sf_kernel *k) {
  int p[2][2];
  if (pipe2(p[0], O_CLOEXEC) || pipe2(p[1], O_CLOEXEC) || pipe2(g_wake, O_CLOEXEC)) return -1;
  k->log_fd = fcntl(2, F_DUPFD_CLOEXEC, 3);
  fflush(stdout);
  fflush(stderr);
  if (dup2(p[0][1], 1) < 0 || dup2(p[1][1], 2) < 0) return -1;
  close(p[0][1]);
  close(p[1][1]);
  g_rd[0] = p[0][0];
  g_rd[1] = p[1][0];
  for (int s = 0; s < 2; s++) fcntl(g_rd[s], F_SETFL, fcntl(g_rd[s], F_GETFL) | O_NONBLOCK);
  setvbuf(stdout, NULL, _IOLBF, 0); /* a pipe would be block-buffered: progress lines must arrive live */
  /* nothing reads the terminal in a notebook: io.read() sees end of input instead of hanging */
  int devnull = open("/dev/null", O_RDONLY);
  if (devnull >= 0) dup2(devnull, 0), close(devnull);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old); /* signals go to the main thread */
  int rc = pthread_create(&g_thread, NULL, reader, k);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc) return -1;
  g_started = 1;
  return 0;
}

void sf_kio_stop(sf_kernel *k) {
  if (!g_started) return;
  sf_kio_flush(k);
  ssize_t w = write(g_wake[1], "x", 1);
  (void)w;
  pthread_join(g_thread, NULL);
  g_started = 0;
  /* later writes (lua_close, atexit) go to the original stderr */
  if (k->log_fd >= 0) dup2(k->log_fd, 1), dup2(k->log_fd, 2);
}

/* kernel.c — `sfwb --kernel CONNECTION_FILE`: binds the five Jupyter sockets named in the connection
 * file, serves shell requests on the main thread (one Lua state), control requests (interrupt,
 * shutdown) on a thread of their own so they work while a cell runs, and echoes heartbeats. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/app.h"
#include "app/kernel.h"

static sf_kernel g_k;

static void on_sigint(int sig) {
  (void)sig;
  sf_app_interrupt(); /* stops the running cell; at rest it does nothing (the kernel stays up) */
}

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    if (n + 4096 + 1 > cap) {
      char *b = realloc(buf, cap = 2 * cap + 8192);
      if (!b) break;
      buf = b;
    }
    size_t r = fread(buf + n, 1, 4096, f);
    n += r;
    if (r == 0) break;
  }
  fclose(f);
  if (buf) buf[n] = 0;
  return buf;
}

/* binds `type` at the connection's transport/ip and the port under `key`; NULL + message on failure */
static void *bind_socket(sf_kernel *k, const cJSON *conn, const char *key, int type) {
  const char *transport = cJSON_GetStringValue(cJSON_GetObjectItem(conn, "transport"));
  const char *ip = cJSON_GetStringValue(cJSON_GetObjectItem(conn, "ip"));
  const cJSON *port = cJSON_GetObjectItem(conn, key);
  if (!transport) transport = "tcp";
  if (!ip) ip = "127.0.0.1";
  if (!cJSON_IsNumber(port)) {
    fprintf(stderr, "sfwb --kernel: the connection file has no number under \"%s\"\n", key);
    return NULL;
  }
  char ep[512];
  if (!strcmp(transport, "ipc")) snprintf(ep, sizeof ep, "ipc://%s-%d", ip, (int)port->valuedouble);
  else snprintf(ep, sizeof ep, "%s://%s:%d", transport, ip, (int)port->valuedouble);
  void *s = zmq_socket(k->ctx, type);
  int linger = 1000;
  zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
  if (!s || zmq_bind(s, ep) != 0) {
    fprintf(stderr, "sfwb --kernel: cannot bind %s (%s): %s\n", key, ep, zmq_strerror(zmq_errno()));
    if (s) zmq_close(s);
    return NULL;
  }
  return s;
}

static void *heartbeat(void *arg) {
  sf_kernel *k = arg;
  zmq_proxy(k->hb, k->hb, NULL); /* echo every ping; returns when the context terminates */
  zmq_close(k->hb);
  return NULL;
}

static void reply_shutdown(sf_kernel *k, void *sock, const sf_kmsg *m) {
  cJSON *c = cJSON_CreateObject();
  cJSON_AddStringToObject(c, "status", "ok");
  cJSON_AddBoolToObject(c, "restart", cJSON_IsTrue(cJSON_GetObjectItem(m->content, "restart")));
  sf_kmsg_send(k, sock, m, NULL, NULL, "shutdown_reply", c);
  /* a restart is the client's: it starts a new process with a fresh state when this one has exited */
  k->shutdown = 1;
  sf_app_interrupt();
}

static void *control(void *arg) {
  sf_kernel *k = arg;
  while (!k->shutdown) {
    zmq_pollitem_t it = {k->control, 0, ZMQ_POLLIN, 0};
    int r = zmq_poll(&it, 1, 200);
    if (r < 0 && zmq_errno() == ETERM) break;
    if (r <= 0) continue;
    sf_kmsg m;
    if (sf_kmsg_recv(k, k->control, &m)) continue;
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(m.header, "msg_type"));
    sf_kio_status(k, m.header, "busy");
    if (!strcmp(type, "interrupt_request")) {
      sf_app_interrupt();
      cJSON *c = cJSON_CreateObject();
      cJSON_AddStringToObject(c, "status", "ok");
      sf_kmsg_send(k, k->control, &m, NULL, NULL, "interrupt_reply", c);
    } else if (!strcmp(type, "shutdown_request")) {
      reply_shutdown(k, k->control, &m);
    } else if (!strcmp(type, "kernel_info_request")) {
      sf_kmsg_send(k, k->control, &m, NULL, NULL, "kernel_info_reply", sf_kreq_kernel_info(k));
    } else {
      sf_kernel_log(k, "control: ignored %s", type);
    }
    sf_kio_status(k, m.header, "idle");
    sf_kmsg_free(&m);
  }
  zmq_close(k->control);
  return NULL;
}

static void serve_shell(sf_kernel *k, const sf_kmsg *m) {
  const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(m->header, "msg_type"));
  sf_kio_set_parent(k, m->header);
  sf_kio_status(k, m->header, "busy");
  if (!strcmp(type, "execute_request")) {
    sf_kexec_execute(k, m);
  } else if (!strcmp(type, "kernel_info_request")) {
    sf_kmsg_send(k, k->shell, m, NULL, NULL, "kernel_info_reply", sf_kreq_kernel_info(k));
  } else if (!strcmp(type, "complete_request")) {
    sf_kmsg_send(k, k->shell, m, NULL, NULL, "complete_reply", sf_kreq_complete(k, m->content));
  } else if (!strcmp(type, "inspect_request")) {
    sf_kmsg_send(k, k->shell, m, NULL, NULL, "inspect_reply", sf_kreq_inspect(k, m->content));
  } else if (!strcmp(type, "is_complete_request")) {
    sf_kmsg_send(k, k->shell, m, NULL, NULL, "is_complete_reply", sf_kreq_is_complete(k, m->content));
  } else if (!strcmp(type, "history_request")) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "status", "ok");
    cJSON_AddItemToObject(c, "history", cJSON_CreateArray());
    sf_kmsg_send(k, k->shell, m, NULL, NULL, "history_reply", c);
  } else if (!strcmp(type, "comm_info_request")) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "status", "ok");
    cJSON_AddItemToObject(c, "comms", cJSON_CreateObject());
    sf_kmsg_send(k, k->shell, m, NULL, NULL, "comm_info_reply", c);
  } else if (!strcmp(type, "shutdown_request")) {
    reply_shutdown(k, k->shell, m);
  } else {
    sf_kernel_log(k, "shell: ignored %s", type);
  }
  sf_kio_flush(k);
  sf_kio_status(k, m->header, "idle");
  sf_kio_set_parent(k, NULL);
}

int sf_kernel_run(lua_State *L, const char *connection_file) {
  sf_kernel *k = &g_k;
  memset(k, 0, sizeof *k);
  k->L = L;
  k->log_fd = -1;
  pthread_mutex_init(&k->iopub_mu, NULL);
  char *text = read_file(connection_file);
  if (!text) {
    fprintf(stderr, "sfwb --kernel: cannot read the connection file %s: %s\n", connection_file, strerror(errno));
    return 1;
  }
  cJSON *conn = cJSON_Parse(text);
  free(text);
  if (!conn) {
    fprintf(stderr, "sfwb --kernel: %s is not JSON\n", connection_file);
    return 1;
  }
  const char *scheme = cJSON_GetStringValue(cJSON_GetObjectItem(conn, "signature_scheme"));
  const char *key = cJSON_GetStringValue(cJSON_GetObjectItem(conn, "key"));
  if (scheme && strcmp(scheme, "hmac-sha256")) {
    fprintf(stderr, "sfwb --kernel: signature_scheme \"%s\" is not supported (hmac-sha256 is)\n", scheme);
    cJSON_Delete(conn);
    return 1;
  }
  if (key && strlen(key) >= sizeof k->key) {
    fprintf(stderr, "sfwb --kernel: the key in %s is longer than %zu bytes\n", connection_file, sizeof k->key - 1);
    cJSON_Delete(conn);
    return 1;
  }
  snprintf(k->key, sizeof k->key, "%s", key ? key : "");
  k->keylen = strlen(k->key);
  /* the session id of our messages: random hex, as jupyter's Session makes one */
  {
    unsigned char b[16] = {0};
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ssize_t r = read(fd, b, sizeof b);
      (void)r;
      close(fd);
    }
    for (int i = 0; i < 16; i++) snprintf(k->session + 2 * i, 3, "%02x", b[i] ^ (unsigned char)(getpid() >> (i % 4)));
  }
  k->ctx = zmq_ctx_new();
  k->shell = bind_socket(k, conn, "shell_port", ZMQ_ROUTER);
  k->control = bind_socket(k, conn, "control_port", ZMQ_ROUTER);
  k->stdin_sock = bind_socket(k, conn, "stdin_port", ZMQ_ROUTER);
  k->iopub = bind_socket(k, conn, "iopub_port", ZMQ_PUB);
  k->hb = bind_socket(k, conn, "hb_port", ZMQ_ROUTER); /* as ipykernel: a ROUTER proxied to itself */
  cJSON_Delete(conn);
  if (!k->shell || !k->control || !k->stdin_sock || !k->iopub || !k->hb) {
    zmq_ctx_term(k->ctx);
    return 1;
  }
  sf_kexec_init(k);
  if (sf_kio_start(k)) {
    fprintf(stderr, "sfwb --kernel: cannot redirect stdout/stderr: %s\n", strerror(errno));
    return 1;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  pthread_t th_hb, th_ctl;
  int ok = !pthread_create(&th_hb, NULL, heartbeat, k) && !pthread_create(&th_ctl, NULL, control, k);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (!ok) {
    fprintf(stderr, "sfwb --kernel: cannot start threads\n");
    return 1;
  }
  sf_kernel_log(k, "sfwb %s kernel up (protocol %s, pid %d)", SFWB_VERSION, SF_KERNEL_PROTOCOL, (int)getpid());
  sf_kio_status(k, NULL, "starting");
  pid_t parent = getppid();
  while (!k->shutdown) {
    zmq_pollitem_t it = {k->shell, 0, ZMQ_POLLIN, 0};
    int r = zmq_poll(&it, 1, 200);
    if (getppid() != parent) { /* the frontend that started us died without a shutdown_request */
      sf_kernel_log(k, "the parent process is gone");
      break;
    }
    if (r <= 0) continue; /* timeout, or EINTR from a SIGINT at rest */
    sf_kmsg m;
    if (sf_kmsg_recv(k, k->shell, &m)) continue;
    serve_shell(k, &m);
    sf_kmsg_free(&m);
  }
  sf_kernel_log(k, "shutting down");
  sf_kio_stop(k);
  pthread_join(th_ctl, NULL);
  zmq_close(k->shell);
  zmq_close(k->stdin_sock);
  zmq_close(k->iopub);
  zmq_ctx_shutdown(k->ctx); /* ends the heartbeat proxy */
  pthread_join(th_hb, NULL);
  zmq_ctx_term(k->ctx);
  cJSON_Delete(k->cur_parent);
  return 0;
}

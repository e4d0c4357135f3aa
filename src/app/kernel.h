/* kernel.h — the Jupyter kernel's parts (sfwb --kernel CONNECTION_FILE): messaging protocol 5.3 over
 * ZeroMQ with HMAC-SHA256 signed messages. One Lua state per kernel process. */
#ifndef SF_KERNEL_H
#define SF_KERNEL_H

#include <cjson/cJSON.h>
#include <lua.h>
#include <pthread.h>
#include <zmq.h>

#define SF_KERNEL_PROTOCOL "5.3"

typedef struct sf_kernel {
  void *ctx, *shell, *control, *iopub, *stdin_sock, *hb;
  char key[512];
  size_t keylen;
  char session[40];
  lua_State *L;
  int exec_count;
  pthread_mutex_t iopub_mu;  /* the iopub socket and cur_parent are shared with the output and control threads */
  cJSON *cur_parent;         /* header of the request whose output streams now (NULL: none) */
  volatile int shutdown;
  int log_fd;                /* the process's original stderr: the kernel's own diagnostics */
} sf_kernel;

/* kernel_wire.c: one message of the wire protocol */
typedef struct {
  zmq_msg_t *ids;  /* routing identities before "<IDS|MSG>" */
  int nids;
  cJSON *header, *parent, *metadata, *content;
} sf_kmsg;

int sf_kmsg_recv(sf_kernel *k, void *sock, sf_kmsg *m); /* 0, or -1 (bad signature / format: dropped) */
void sf_kmsg_free(sf_kmsg *m);
/* sends msg_type with content (taken) replying to req (its identities and header; NULL for none);
 * topic != NULL: an iopub message under that topic */
int sf_kmsg_send(sf_kernel *k, void *sock, const sf_kmsg *req, const cJSON *parent_header, const char *topic,
                 const char *msg_type, cJSON *content);
void sf_kernel_log(sf_kernel *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *sf_base64(const unsigned char *p, size_t n); /* malloc'ed */

/* kernel_io.c: stdout/stderr of the process become stream messages; iopub publishing */
int sf_kio_start(sf_kernel *k);
void sf_kio_stop(sf_kernel *k);
void sf_kio_flush(sf_kernel *k); /* what was written so far is published before what follows */
void sf_kio_set_parent(sf_kernel *k, const cJSON *header);
/* publishes on iopub (content taken) with the given parent (NULL: the current one) */
void sf_kio_publish(sf_kernel *k, const cJSON *parent, const char *msg_type, cJSON *content);
void sf_kio_status(sf_kernel *k, const cJSON *parent, const char *state);

/* kernel_exec.c: execute_request; registers package.loaded["sfwb.kernel"] (display from Lua) */
void sf_kexec_init(sf_kernel *k);
void sf_kexec_execute(sf_kernel *k, const sf_kmsg *req);

/* kernel_requests.c: the small requests */
cJSON *sf_kreq_kernel_info(sf_kernel *k);
cJSON *sf_kreq_complete(sf_kernel *k, const cJSON *content);
cJSON *sf_kreq_inspect(sf_kernel *k, const cJSON *content);
cJSON *sf_kreq_is_complete(sf_kernel *k, const cJSON *content);

/* kernel.c / kernelspec.c: the entry points from main() */
int sf_kernel_run(lua_State *L, const char *connection_file);
int sf_kernelspec_install(int argc, char **argv);

#endif

/* kernel_wire.c — the Jupyter wire protocol: [identities..., "<IDS|MSG>", HMAC-SHA256 hex signature,
 * header, parent_header, metadata, content, buffers...], signed over the four JSON frames. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "app/kernel.h"

#define DELIM "<IDS|MSG>"

void sf_kernel_log(sf_kernel *k, const char *fmt, ...) {
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n > (int)sizeof buf - 2) n = sizeof buf - 2;
  buf[n++] = '\n';
  ssize_t w = write(k->log_fd >= 0 ? k->log_fd : 2, "[sfwb kernel] ", 14);
  w = write(k->log_fd >= 0 ? k->log_fd : 2, buf, n);
  (void)w;
}

char *sf_base64(const unsigned char *p, size_t n) {
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *out = malloc(4 * ((n + 2) / 3) + 1), *o = out;
  if (!out) return NULL;
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
    *o++ = tab[v >> 18], *o++ = tab[(v >> 12) & 63], *o++ = tab[(v >> 6) & 63], *o++ = tab[v & 63];
  }
  if (i < n) {
    unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0);
    *o++ = tab[v >> 18], *o++ = tab[(v >> 12) & 63];
    *o++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
    *o++ = '=';
  }
  *o = 0;
  return out;
}

static void uuid4(char out[37]) {
  unsigned char b[16];
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0 || read(fd, b, 16) != 16) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    srand((unsigned)(tv.tv_usec ^ tv.tv_sec ^ getpid()));
    for (int i = 0; i < 16; i++) b[i] = (unsigned char)rand();
  }
  if (fd >= 0) close(fd);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3],
           b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* ISO 8601 UTC with microseconds, as the protocol's header.date */
static void iso_now(char out[40]) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char s[32];
  strftime(s, sizeof s, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, 40, "%s.%06ldZ", s, (long)tv.tv_usec);
}

/* hex HMAC-SHA256 of the frames; "" when the connection has no key (signing off) */
static void sign(const sf_kernel *k, const char *const *parts, const size_t *lens, int n, char hex[65]) {
  hex[0] = 0;
  if (!k->keylen) return;
  size_t total = 0;
  for (int i = 0; i < n; i++) total += lens[i];
  unsigned char *buf = malloc(total ? total : 1), *p = buf;
  if (!buf) return;
  for (int i = 0; i < n; i++) memcpy(p, parts[i], lens[i]), p += lens[i];
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  HMAC(EVP_sha256(), k->key, (int)k->keylen, buf, total, md, &mdlen);
  free(buf);
  for (unsigned i = 0; i < mdlen && i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

void sf_kmsg_free(sf_kmsg *m) {
  for (int i = 0; i < m->nids; i++) zmq_msg_close(&m->ids[i]);
  free(m->ids);
  cJSON_Delete(m->header);
  cJSON_Delete(m->parent);
  cJSON_Delete(m->metadata);
  cJSON_Delete(m->content);
  memset(m, 0, sizeof *m);
}

/* all frames of one multipart message; returns the count or -1 */
static int recv_frames(void *sock, zmq_msg_t **out) {
  int n = 0, cap = 0;
  zmq_msg_t *f = NULL;
  for (;;) {
    if (n == cap) {
      zmq_msg_t *g = realloc(f, sizeof *f * (cap = cap ? 2 * cap : 8));
      if (!g) break;
      f = g;
    }
    zmq_msg_init(&f[n]);
    if (zmq_msg_recv(&f[n], sock, 0) < 0) {
      zmq_msg_close(&f[n]);
      break;
    }
    n++;
    if (!zmq_msg_more(&f[n - 1])) {
      *out = f;
      return n;
    }
  }
  for (int i = 0; i < n; i++) zmq_msg_close(&f[i]);
  free(f);
  return -1;
}

static cJSON *parse_frame(zmq_msg_t *f) {
  return cJSON_ParseWithLength((const char *)zmq_msg_data(f), zmq_msg_size(f));
}

int sf_kmsg_recv(sf_kernel *k, void *sock, sf_kmsg *m) {
  memset(m, 0, sizeof *m);
  zmq_msg_t *f;
  int n = recv_frames(sock, &f);
  if (n < 0) return -1;
  int d = 0;
  while (d < n && !(zmq_msg_size(&f[d]) == strlen(DELIM) && !memcmp(zmq_msg_data(&f[d]), DELIM, strlen(DELIM)))) d++;
  int rc = -1;
  if (d + 5 < n) { /* the delimiter, then signature, header, parent, metadata, content */
    const char *parts[4];
    size_t lens[4];
    for (int i = 0; i < 4; i++) parts[i] = zmq_msg_data(&f[d + 2 + i]), lens[i] = zmq_msg_size(&f[d + 2 + i]);
    char hex[65];
    sign(k, parts, lens, 4, hex);
    size_t sl = zmq_msg_size(&f[d + 1]);
    if (k->keylen && (sl != 64 || CRYPTO_memcmp(hex, zmq_msg_data(&f[d + 1]), 64))) {
      sf_kernel_log(k, "dropped a message with a bad signature");
    } else {
      m->header = parse_frame(&f[d + 2]);
      m->parent = parse_frame(&f[d + 3]);
      m->metadata = parse_frame(&f[d + 4]);
      m->content = parse_frame(&f[d + 5]);
      if (m->header && m->content && cJSON_IsString(cJSON_GetObjectItem(m->header, "msg_type"))) rc = 0;
      else sf_kernel_log(k, "dropped a malformed message");
    }
  } else {
    sf_kernel_log(k, "dropped a message without the <IDS|MSG> delimiter and its frames");
  }
  if (rc == 0) {
    m->nids = d;
    m->ids = d ? malloc(sizeof(zmq_msg_t) * d) : NULL;
    for (int i = 0; i < d; i++) {
      zmq_msg_init(&m->ids[i]);
      zmq_msg_move(&m->ids[i], &f[i]);
    }
    if (d && !m->ids) rc = -1;
  }
  for (int i = 0; i < n; i++) zmq_msg_close(&f[i]);
  free(f);
  if (rc) sf_kmsg_free(m);
  return rc;
}

static int send_str(void *sock, const char *s, size_t n, int more) {
  return zmq_send(sock, s, n, more ? ZMQ_SNDMORE : 0) < 0 ? -1 : 0;
}

int sf_kmsg_send(sf_kernel *k, void *sock, const sf_kmsg *req, const cJSON *parent_header, const char *topic,
                 const char *msg_type, cJSON *content) {
  char id[37], date[40];
  uuid4(id);
  iso_now(date);
  cJSON *h = cJSON_CreateObject();
  cJSON_AddStringToObject(h, "msg_id", id);
  cJSON_AddStringToObject(h, "session", k->session);
  cJSON_AddStringToObject(h, "username", "sfwb");
  cJSON_AddStringToObject(h, "date", date);
  cJSON_AddStringToObject(h, "msg_type", msg_type);
  cJSON_AddStringToObject(h, "version", SF_KERNEL_PROTOCOL);
  if (!parent_header && req) parent_header = req->header;
  char *js[4];
  js[0] = cJSON_PrintUnformatted(h);
  js[1] = parent_header ? cJSON_PrintUnformatted(parent_header) : strdup("{}");
  js[2] = strdup("{}");
  js[3] = content ? cJSON_PrintUnformatted(content) : strdup("{}");
  cJSON_Delete(h);
  cJSON_Delete(content);
  int rc = 0;
  size_t lens[4];
  for (int i = 0; i < 4; i++) {
    if (!js[i]) rc = -1;
    lens[i] = js[i] ? strlen(js[i]) : 0;
  }
  if (!rc) {
    char hex[65];
    sign(k, (const char *const *)js, lens, 4, hex);
    if (topic) {
      rc |= send_str(sock, topic, strlen(topic), 1);
    } else if (req) {
      for (int i = 0; i < req->nids; i++)
        rc |= send_str(sock, zmq_msg_data(&req->ids[i]), zmq_msg_size(&req->ids[i]), 1);
    }
    rc |= send_str(sock, DELIM, strlen(DELIM), 1);
    rc |= send_str(sock, hex, strlen(hex), 1);
    for (int i = 0; i < 4; i++) rc |= send_str(sock, js[i], lens[i], i < 3);
  }
  for (int i = 0; i < 4; i++) free(js[i]);
  if (rc) sf_kernel_log(k, "sending %s failed: %s", msg_type, zmq_strerror(zmq_errno()));
  return rc;
}

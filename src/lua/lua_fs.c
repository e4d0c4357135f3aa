/* lua_fs.c — sfwb.fs: the file-system calls recipes and trainers need, done in C so no path ever
 * reaches a shell (a quote, `;` or `$()` in a --logdir is a folder name, nothing more).
 *   sfwb.fs.mkdir(path [, {parents=true}])  -> path      (exists already: fine; a file in the way: error)
 *   sfwb.fs.stat(path)   -> {size=, mtime=, kind="file"|"dir"|"other"} or nil   (follows links)
 *   sfwb.fs.listdir(dir) -> sorted names (without . and ..); error when dir cannot be read
 *   sfwb.fs.remove(path) -> true | nil, err      (a file or an empty folder)
 *   sfwb.fs.rmtree(path)                         (a folder and all inside; links are removed, not followed)
 *   sfwb.fs.writable(dir) -> true | nil, reason  (dir exists, is a folder, and a file can be created in it)
 *   sfwb.fs.run(argv [, {stdout=path, stderr=path, cwd=dir}]) -> exit status  (no shell; argv[1] on $PATH)
 *   sfwb.fs.sha256(path) -> hex digest
 *   sfwb.fs.isatty(fd)   -> boolean      sfwb.fs.pid() -> this process's id
 *   sfwb.fs.alive(pid)   -> boolean      (a process of that id exists: stale temp files are told by it) */
#define _GNU_SOURCE /* posix_spawn_file_actions_addchdir_np */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int mkdir_one(const char *p) {
  if (mkdir(p, 0777) == 0) return 0;
  int e = errno;
  struct stat st;
  if (e == EEXIST && stat(p, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
  errno = e;
  return -1;
}

static int l_mkdir(lua_State *L) {
  size_t n;
  const char *path = luaL_checklstring(L, 1, &n);
  int parents = 1;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "parents");
    if (!lua_isnil(L, -1)) parents = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  if (n == 0) return luaL_error(L, "sfwb.fs.mkdir: empty path");
  char *buf = malloc(n + 1);
  if (!buf) return luaL_error(L, "sfwb.fs.mkdir: out of memory");
  memcpy(buf, path, n + 1);
  if (parents) {
    for (size_t i = 1; i < n; i++) {
      if (buf[i] != '/') continue;
      buf[i] = 0;
      int rc = mkdir_one(buf);
      int e = errno;
      buf[i] = '/';
      if (rc != 0 && e != EEXIST) {
        lua_pushfstring(L, "cannot create folder %s: %s", path, strerror(e));
        free(buf);
        return lua_error(L);
      }
    }
  }
  int rc = mkdir_one(buf);
  int e = errno;
  free(buf);
  if (rc != 0) {
    struct stat st;
    if (e == EEXIST && stat(path, &st) == 0 && !S_ISDIR(st.st_mode))
      return luaL_error(L, "cannot create folder %s: a file of that name exists", path);
    return luaL_error(L, "cannot create folder %s: %s", path, strerror(e));
  }
  lua_pushvalue(L, 1);
  return 1;
}

static int l_stat(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (stat(path, &st) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, strerror(errno));
    return 2;
  }
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, (lua_Integer)st.st_size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)st.st_mtime);
  lua_setfield(L, -2, "mtime");
  lua_pushstring(L, S_ISDIR(st.st_mode) ? "dir" : S_ISREG(st.st_mode) ? "file" : "other");
  lua_setfield(L, -2, "kind");
  return 1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* names of a folder, sorted bytewise; returns NULL with errno set when it cannot be read */
static char **list_names(const char *dir, size_t *count) {
  DIR *d = opendir(dir);
  if (!d) return NULL;
  size_t n = 0, cap = 16;
  char **v = malloc(cap * sizeof *v);
  struct dirent *de;
  while (v && (de = readdir(d)) != NULL) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    if (n == cap) {
      char **nv = realloc(v, (cap *= 2) * sizeof *v);
      if (!nv) break;
      v = nv;
    }
    v[n++] = strdup(de->d_name);
  }
  closedir(d);
  if (v) qsort(v, n, sizeof *v, cmp_str);
  *count = n;
  return v;
}

static void free_names(char **v, size_t n) {
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
}

static int l_listdir(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  size_t n = 0;
  char **v = list_names(dir, &n);
  if (!v) return luaL_error(L, "cannot list folder %s: %s", dir, strerror(errno));
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushstring(L, v[i] ? v[i] : "");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  free_names(v, n);
  return 1;
}

static int l_remove(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  if (remove(path) != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot remove %s: %s", path, strerror(errno));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int rmtree(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
  if (!S_ISDIR(st.st_mode)) return unlink(path);
  size_t n = 0;
  char **v = list_names(path, &n);
  if (!v) return -1;
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    if (!v[i]) continue;
    size_t len = strlen(path) + strlen(v[i]) + 2;
    char *child = malloc(len);
    if (!child) { rc = -1; break; }
    snprintf(child, len, "%s/%s", path, v[i]);
    rc = rmtree(child);
    free(child);
  }
  free_names(v, n);
  return rc == 0 ? rmdir(path) : rc;
}

static int l_rmtree(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  if (rmtree(path) != 0) return luaL_error(L, "cannot remove %s: %s", path, strerror(errno));
  return 0;
}

static int l_writable(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  struct stat st;
  const char *why = NULL;
  if (stat(dir, &st) != 0) why = strerror(errno);
  else if (!S_ISDIR(st.st_mode)) why = "not a folder";
  else if (access(dir, W_OK | X_OK) != 0) why = strerror(errno);
  if (why) {
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_run(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)luaL_len(L, 1);
  if (n < 1) return luaL_error(L, "sfwb.fs.run: argv is empty");
  const char *outp = NULL, *errp = NULL, *cwd = NULL;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "stdout");
    outp = lua_tostring(L, -1);
    lua_getfield(L, 2, "stderr");
    errp = lua_tostring(L, -1);
    lua_getfield(L, 2, "cwd");
    cwd = lua_tostring(L, -1);
  }
  char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
  luaL_checkstack(L, n, "sfwb.fs.run: too many arguments");
  for (int i = 1; i <= n; i++) { /* the strings stay on the stack (alive) until the call returns */
    lua_rawgeti(L, 1, i);
    if (!lua_isstring(L, -1)) return luaL_error(L, "sfwb.fs.run: argv[%d] is not a string", i);
    argv[i - 1] = (char *)lua_tostring(L, -1);
  }
  argv[n] = NULL;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (outp) posix_spawn_file_actions_addopen(&fa, 1, outp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
  if (errp) {
    if (outp && !strcmp(outp, errp)) posix_spawn_file_actions_adddup2(&fa, 1, 2);
    else posix_spawn_file_actions_addopen(&fa, 2, errp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
  }
  if (cwd) posix_spawn_file_actions_addchdir_np(&fa, cwd); /* after the opens: their paths are the caller's */
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return luaL_error(L, "cannot run %s: %s", argv[0], strerror(rc));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return luaL_error(L, "waiting for %s: %s", argv[0], strerror(errno));
  lua_pushinteger(L, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0));
  return 1;
}

/* ---- SHA-256 (FIPS 180-4) ---- */
typedef struct {
  uint32_t h[8];
  uint64_t len;
  unsigned char buf[64];
  size_t fill;
} sha256_ctx;

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
static void sha256_block(sha256_ctx *c, const unsigned char *p) {
  uint32_t w[64], a[8];
  for (int i = 0; i < 16; i++) w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  memcpy(a, c->h, sizeof a);
  for (int i = 0; i < 64; i++) {
    uint32_t S1 = ROR(a[4], 6) ^ ROR(a[4], 11) ^ ROR(a[4], 25);
    uint32_t ch = (a[4] & a[5]) ^ (~a[4] & a[6]);
    uint32_t t1 = a[7] + S1 + ch + K256[i] + w[i];
    uint32_t S0 = ROR(a[0], 2) ^ ROR(a[0], 13) ^ ROR(a[0], 22);
    uint32_t mj = (a[0] & a[1]) ^ (a[0] & a[2]) ^ (a[1] & a[2]);
    uint32_t t2 = S0 + mj;
    memmove(a + 1, a, 7 * sizeof *a);
    a[4] += t1;
    a[0] = t1 + t2;
  }
  for (int i = 0; i < 8; i++) c->h[i] += a[i];
}

static void sha256_update(sha256_ctx *c, const unsigned char *p, size_t n) {
  c->len += n;
  while (n > 0) {
    size_t k = 64 - c->fill < n ? 64 - c->fill : n;
    memcpy(c->buf + c->fill, p, k);
    c->fill += k, p += k, n -= k;
    if (c->fill == 64) sha256_block(c, c->buf), c->fill = 0;
  }
}

static void sha256_hex(sha256_ctx *c, char out[65]) {
  uint64_t bits = c->len * 8;
  unsigned char pad = 0x80, z = 0, lenb[8];
  sha256_update(c, &pad, 1);
  while (c->fill != 56) sha256_update(c, &z, 1);
  for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)(bits >> (56 - 8 * i));
  sha256_update(c, lenb, 8);
  for (int i = 0; i < 8; i++) snprintf(out + 8 * i, 9, "%08x", c->h[i]);
}

static int l_sha256(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  FILE *f = fopen(path, "rb");
  if (!f) return luaL_error(L, "cannot read %s: %s", path, strerror(errno));
  sha256_ctx c = {{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19}, 0, {0}, 0};
  unsigned char buf[1 << 14];
  size_t k;
  while ((k = fread(buf, 1, sizeof buf, f)) > 0) sha256_update(&c, buf, k);
  int bad = ferror(f);
  fclose(f);
  if (bad) return luaL_error(L, "read error in %s", path);
  char hex[65];
  sha256_hex(&c, hex);
  lua_pushstring(L, hex);
  return 1;
}

static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_optinteger(L, 1, 1)));
  return 1;
}

static int l_pid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

static int l_alive(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  lua_pushboolean(L, pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM));
  return 1;
}

void sf_lua_register_fs(lua_State *L) {
  static const luaL_Reg fns[] = {{"mkdir", l_mkdir}, {"stat", l_stat}, {"listdir", l_listdir}, {"remove", l_remove},
                                 {"rmtree", l_rmtree}, {"writable", l_writable}, {"run", l_run}, {"sha256", l_sha256},
                                 {"isatty", l_isatty}, {"pid", l_pid}, {"alive", l_alive}, {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "fs");
}

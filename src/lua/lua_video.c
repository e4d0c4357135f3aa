/* lua_video.c — sfwb.video.write: frames [F, 3, H, W] in [-1, 1] (or u8 [F, H, W, 3]) to an H.264 MP4
 * by piping raw RGB frames to ffmpeg; without ffmpeg, a folder of numbered PNGs and a message. */
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/error.h"
#include "ops/ops.h"
#include "io/image.h"
#include "io/iobuf.h"
#include "lua/lua_tensor.h"
#include "lua/lua_tensor_impl.h"


static int have_ffmpeg(void) { return system("command -v ffmpeg >/dev/null 2>&1") == 0; }

/* single-quoted for sh */
static void shell_quote(luaL_Buffer *b, const char *s) {
  luaL_addchar(b, '\'');
  for (; *s; s++) {
    if (*s == '\'') luaL_addstring(b, "'\\''");
    else luaL_addchar(b, *s);
  }
  luaL_addchar(b, '\'');
}

/* frame i as u8 [H, W, 3] (new reference) */
static sf_tensor *frame_u8(sf_tensor *frames, int64_t i) {
  sf_tensor *f = sf_select(frames, 0, i);
  if (!f) return NULL;
  sf_tensor *u = f->dtype == SF_U8 ? sf_retain(f) : sf_image_float_to_u8(f);
  sf_release(f);
  return u;
}

static int write_pngs(lua_State *L, sf_tensor *frames, const char *dir) {
  if (mkdir(dir, 0777) != 0 && errno != EEXIST) return luaL_error(L, "%s: cannot create folder: %s", dir, strerror(errno));
  for (int64_t i = 0; i < frames->shape[0]; i++) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%05lld.png", dir, (long long)i);
    sf_tensor *u = frame_u8(frames, i);
    int rc = u ? sf_png_write(p, u) : -1;
    sf_release(u);
    if (rc) return sf_lua_raise(L);
  }
  return 0;
}

/* sfwb.video.write(path, frames, {fps=16, png=false, crf=nil}) -> path written, "mp4" | "png" */
static int l_write(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  sf_tensor *frames = sf_lua_check_tensor(L, 2);
  lua_Number fps = 16;
  int force_png = 0, crf = -1;
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "fps");
    if (!lua_isnil(L, -1)) fps = luaL_checknumber(L, -1);
    lua_getfield(L, 3, "png");
    force_png = lua_toboolean(L, -1);
    lua_getfield(L, 3, "crf");
    if (!lua_isnil(L, -1)) crf = (int)luaL_checkinteger(L, -1);
    lua_pop(L, 3);
  }
  int u8 = frames->dtype == SF_U8;
  if (frames->ndim != 4 || (u8 ? frames->shape[3] != 3 : (frames->shape[1] != 3 || !sf_dtype_is_float(frames->dtype))) ||
      frames->shape[0] < 1) {
    char b[80];
    return luaL_error(L, "%s: video frames must be float [F, 3, H, W] in [-1, 1] or u8 [F, H, W, 3], got %s %s", path,
                      sf_dtype_name(frames->dtype), sf_shape_str(frames, b, sizeof b));
  }
  if (!(fps > 0)) return luaL_error(L, "%s: fps must be positive", path);
  int64_t H = u8 ? frames->shape[1] : frames->shape[2], W = u8 ? frames->shape[2] : frames->shape[3];
  if (force_png || !have_ffmpeg()) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *dot = strrchr(dir, '.');
    if (dot && !strchr(dot, '/')) *dot = 0;
    write_pngs(L, frames, dir);
    if (!force_png)
      fprintf(stderr, "sfwb.video.write: ffmpeg is not installed, so %lld frames were written as PNGs to %s/\n",
              (long long)frames->shape[0], dir);
    lua_pushstring(L, dir);
    lua_pushliteral(L, "png");
    return 2;
  }
  /* ffmpeg writes a temporary name in the same folder; renamed into place on success */
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp-%d.mp4", path, (int)getpid());
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  char head[256];
  snprintf(head, sizeof head,
           "ffmpeg -nostdin -y -loglevel error -f rawvideo -pix_fmt rgb24 -s %lldx%lld -r %.9g -i - "
           "-vf 'pad=ceil(iw/2)*2:ceil(ih/2)*2' -c:v libx264 -pix_fmt yuv420p ",
           (long long)W, (long long)H, (double)fps);
  luaL_addstring(&b, head);
  if (crf >= 0) {
    snprintf(head, sizeof head, "-crf %d ", crf);
    luaL_addstring(&b, head);
  }
  luaL_addstring(&b, "-f mp4 ");
  shell_quote(&b, tmp);
  luaL_pushresult(&b);
  const char *cmd = lua_tostring(L, -1);
  void (*old)(int) = signal(SIGPIPE, SIG_IGN); /* a dying ffmpeg must not kill sfwb */
  FILE *p = popen(cmd, "w");
  if (!p) {
    signal(SIGPIPE, old);
    return luaL_error(L, "%s: cannot start ffmpeg: %s", path, strerror(errno));
  }
  int werr = 0;
  for (int64_t i = 0; i < frames->shape[0] && !werr; i++) {
    sf_tensor *u = frame_u8(frames, i);
    sf_tensor *c = u ? sf_io_cpu_contiguous(u) : NULL;
    sf_release(u);
    if (!c) {
      pclose(p);
      signal(SIGPIPE, old);
      unlink(tmp);
      return sf_lua_raise(L);
    }
    size_t n = (size_t)(H * W * 3);
    if (fwrite(sf_data_ptr(c), 1, n, p) != n) werr = 1;
    sf_release(c);
  }
  int st = pclose(p);
  signal(SIGPIPE, old);
  if (werr || st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    unlink(tmp);
    return sf_lua_errorf(L, "%s: ffmpeg failed (exit status %d) while encoding %lld frames of %lldx%lld", path,
                      WIFEXITED(st) ? WEXITSTATUS(st) : -1, (long long)frames->shape[0], (long long)W, (long long)H);
  }
  if (rename(tmp, path) != 0) {
    unlink(tmp);
    return luaL_error(L, "%s: cannot move the encoded video into place: %s", path, strerror(errno));
  }
  lua_pushstring(L, path);
  lua_pushliteral(L, "mp4");
  return 2;
}

static int l_have_ffmpeg(lua_State *L) {
  lua_pushboolean(L, have_ffmpeg());
  return 1;
}

void sf_lua_register_video(lua_State *L) {
  static const luaL_Reg fns[] = {{"write", l_write}, {"have_ffmpeg", l_have_ffmpeg}, {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "video");
}

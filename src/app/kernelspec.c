/* kernelspec.c — `sfwb --install-kernel [--user | --prefix P] [--name N] [--display-name D]`: writes
 * the kernelspec as `jupyter kernelspec install` would: <data dir>/kernels/<name>/kernel.json running
 * this very binary with --kernel, plus logo-32x32.png and logo-64x64.png (drawn here with cairo). */
#define _GNU_SOURCE
#include <cairo.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/kernel.h"

static int mkdir_p(const char *path) {
  char p[2 * PATH_MAX];
  snprintf(p, sizeof p, "%s", path);
  for (char *c = p + 1; *c; c++) {
    if (*c != '/') continue;
    *c = 0;
    if (mkdir(p, 0755) != 0 && errno != EEXIST) return -1;
    *c = '/';
  }
  return mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* temp name + rename, as every file the project writes */
static int write_atomic(const char *path, const char *data, size_t n) {
  char tmp[2 * PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
  FILE *f = fopen(tmp, "wb");
  if (!f) return -1;
  int ok = fwrite(data, 1, n, f) == n;
  ok &= fclose(f) == 0;
  if (!ok || rename(tmp, path) != 0) {
    unlink(tmp);
    return -1;
  }
  return 0;
}

/* the logo: "sf" on a rounded square in the colours of the attention heat maps */
static int write_logo(const char *path, int size) {
  cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, size, size);
  cairo_t *cr = cairo_create(s);
  double r = size * 0.18, w = size;
  cairo_new_sub_path(cr);
  cairo_arc(cr, w - r, r, r, -M_PI / 2, 0);
  cairo_arc(cr, w - r, w - r, r, 0, M_PI / 2);
  cairo_arc(cr, r, w - r, r, M_PI / 2, M_PI);
  cairo_arc(cr, r, r, r, M_PI, 3 * M_PI / 2);
  cairo_close_path(cr);
  cairo_pattern_t *g = cairo_pattern_create_linear(0, 0, w, w);
  cairo_pattern_add_color_stop_rgb(g, 0, 0.267, 0.005, 0.329); /* viridis ends */
  cairo_pattern_add_color_stop_rgb(g, 1, 0.128, 0.567, 0.551);
  cairo_set_source(cr, g);
  cairo_fill(cr);
  cairo_pattern_destroy(g);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_font_size(cr, size * 0.5);
  cairo_text_extents_t te;
  cairo_text_extents(cr, "sf", &te);
  cairo_move_to(cr, (w - te.width) / 2 - te.x_bearing, (w - te.height) / 2 - te.y_bearing);
  cairo_set_source_rgb(cr, 0.993, 0.906, 0.144);
  cairo_show_text(cr, "sf");
  cairo_destroy(cr);
  char tmp[2 * PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
  int rc = cairo_surface_write_to_png(s, tmp) == CAIRO_STATUS_SUCCESS && rename(tmp, path) == 0 ? 0 : -1;
  if (rc) unlink(tmp);
  cairo_surface_destroy(s);
  return rc;
}

static void usage(void) {
  printf("usage: sfwb --install-kernel [--user | --prefix P] [--name N] [--display-name D]\n"
         "  writes <data dir>/kernels/N/kernel.json (+ logos) as `jupyter kernelspec install` would:\n"
         "  --prefix P   P/share/jupyter (e.g. a virtualenv, or a temp dir with JUPYTER_PATH=P/share/jupyter)\n"
         "  --user       $JUPYTER_DATA_DIR, or ~/.local/share/jupyter\n"
         "  (neither)    /usr/local/share/jupyter (system-wide)\n"
         "  --name N     kernel name (default sfwb); --display-name D (default \"sfwb (Lua 5.4)\")\n");
}

int sf_kernelspec_install(int argc, char **argv) {
  const char *prefix = NULL, *name = "sfwb", *display = "sfwb (Lua 5.4)";
  int user = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--user")) user = 1;
    else if (!strcmp(a, "--prefix") && i + 1 < argc) prefix = argv[++i];
    else if (!strncmp(a, "--prefix=", 9)) prefix = a + 9;
    else if (!strcmp(a, "--name") && i + 1 < argc) name = argv[++i];
    else if (!strcmp(a, "--display-name") && i + 1 < argc) display = argv[++i];
    else if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(); return 0; }
    else {
      fprintf(stderr, "sfwb --install-kernel: unknown or incomplete option '%s'\n", a);
      usage();
      return 1;
    }
  }
  if (user && prefix) {
    fprintf(stderr, "sfwb --install-kernel: --user and --prefix exclude each other\n");
    return 1;
  }
  if (!*name || strchr(name, '/')) {
    fprintf(stderr, "sfwb --install-kernel: bad kernel name '%s'\n", name);
    return 1;
  }
  char data[PATH_MAX];
  if (prefix) {
    snprintf(data, sizeof data, "%s/share/jupyter", prefix);
  } else if (user) {
    const char *d = getenv("JUPYTER_DATA_DIR"), *home = getenv("HOME"), *xdg = getenv("XDG_DATA_HOME");
    if (d && *d) snprintf(data, sizeof data, "%s", d);
    else if (xdg && *xdg) snprintf(data, sizeof data, "%s/jupyter", xdg);
    else if (home && *home) snprintf(data, sizeof data, "%s/.local/share/jupyter", home);
    else {
      fprintf(stderr, "sfwb --install-kernel --user: neither JUPYTER_DATA_DIR nor HOME is set\n");
      return 1;
    }
  } else {
    snprintf(data, sizeof data, "/usr/local/share/jupyter");
  }
  char dir[PATH_MAX + 64], exe[PATH_MAX] = {0};
  snprintf(dir, sizeof dir, "%s/kernels/%s", data, name);
  if (readlink("/proc/self/exe", exe, sizeof exe - 1) <= 0) {
    fprintf(stderr, "sfwb --install-kernel: cannot find this program's path\n");
    return 1;
  }
  if (mkdir_p(dir)) {
    fprintf(stderr, "sfwb --install-kernel: cannot create %s: %s\n", dir, strerror(errno));
    return 1;
  }
  cJSON *spec = cJSON_CreateObject();
  cJSON *av = cJSON_AddArrayToObject(spec, "argv");
  cJSON_AddItemToArray(av, cJSON_CreateString(exe));
  cJSON_AddItemToArray(av, cJSON_CreateString("--kernel"));
  cJSON_AddItemToArray(av, cJSON_CreateString("{connection_file}"));
  cJSON_AddStringToObject(spec, "display_name", display);
  cJSON_AddStringToObject(spec, "language", "lua");
  cJSON_AddStringToObject(spec, "interrupt_mode", "signal");
  cJSON *md = cJSON_AddObjectToObject(spec, "metadata");
  cJSON_AddBoolToObject(md, "debugger", 0);
  char *js = cJSON_Print(spec);
  cJSON_Delete(spec);
  char path[PATH_MAX + 128];
  snprintf(path, sizeof path, "%s/kernel.json", dir);
  int rc = js ? write_atomic(path, js, strlen(js)) : -1;
  free(js);
  if (rc) {
    fprintf(stderr, "sfwb --install-kernel: cannot write %s: %s\n", path, strerror(errno));
    return 1;
  }
  for (int s = 32; s <= 64; s *= 2) {
    snprintf(path, sizeof path, "%s/logo-%dx%d.png", dir, s, s);
    if (write_logo(path, s)) {
      fprintf(stderr, "sfwb --install-kernel: cannot write %s\n", path);
      return 1;
    }
  }
  printf("Installed kernelspec %s in %s\n", name, dir);
  return 0;
}

/* test_io_statedict.c — statedict over torch.save files made by python3-torch at test time, the
 * safetensors writer/reader round trip, the .pt writer, and clear errors on bad input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/backend.h"
#include "ops/ops.h"
#include "io/pt.h"
#include "io/statedict.h"
#include "sf_test.h"

static char dir[256];
static int have_torch;

static int run(const char *cmd) {
  int rc = system(cmd);
  return rc;
}

static double elem(const sf_tensor *t, int64_t i);
#include "io/iobuf.h"
static double elem(const sf_tensor *t, int64_t i) { return sf_io_get(t, i); }

/* compare every "T name dtype [shape] values" line of expected.txt whose name starts with `file.` */
static void compare_file(const char *file) {
  char path[512], line[1 << 16];
  snprintf(path, sizeof path, "%s/%s.pt", dir, file);
  sf_statedict *sd = sf_statedict_open(path);
  CHECK(sd != NULL);
  if (!sd) return;
  snprintf(path, sizeof path, "%s/expected.txt", dir);
  FILE *f = fopen(path, "r");
  CHECK(f != NULL);
  int seen = 0;
  while (f && fgets(line, sizeof line, f)) {
    char name[512], dt[32];
    int used = 0;
    if (sscanf(line, "T %511s %31s%n", name, dt, &used) != 2) continue;
    size_t fl = strlen(file);
    if (strncmp(name, file, fl) || name[fl] != '.') continue;
    const char *key = name + fl + 1;
    sf_tensor *t = sf_statedict_get(sd, key);
    CHECK(t != NULL);
    if (!t) {
      fprintf(stderr, "  missing %s\n", key);
      continue;
    }
    sf_dtype want;
    CHECK(sf_dtype_from_name(dt, &want) == 0);
    CHECK(t->dtype == want);
    char *p = line + used;
    p = strchr(p, '[') + 1;
    int nd = 0;
    while (*p != ']') {
      long long v = strtoll(p, &p, 10);
      CHECK(nd < t->ndim && t->shape[nd] == v);
      nd++;
      if (*p == ',') p++;
      while (*p == ' ') p++;
    }
    CHECK(nd == t->ndim);
    p++;
    int64_t n = sf_numel(t), i = 0;
    for (; i < n; i++) {
      char *q;
      double v = strtod(p, &q);
      if (q == p) break;
      p = q;
      if (elem(t, i) != v) {
        fprintf(stderr, "  %s[%lld] = %.9g, expected %.9g\n", key, (long long)i, elem(t, i), v);
        CHECK(0);
        break;
      }
    }
    CHECK(i == n);
    sf_release(t);
    seen++;
  }
  if (f) fclose(f);
  CHECK(seen > 0);
  sf_statedict_close(sd);
}

static void test_torch_flat(void) { if (have_torch) compare_file("flat"); }
static void test_torch_views(void) {
  if (!have_torch) return;
  compare_file("views");
  char path[512];
  snprintf(path, sizeof path, "%s/views.pt", dir);
  sf_statedict *sd = sf_statedict_open(path);
  CHECK(sd != NULL);
  if (!sd) return;
  sf_tensor *a = sf_statedict_get(sd, "base"), *b = sf_statedict_get(sd, "t"), *c = sf_statedict_get(sd, "narrow");
  CHECK(a && b && c);
  if (a && b && c) {
    CHECK(a->storage == b->storage && a->storage == c->storage); /* one shared storage */
    CHECK(!sf_is_contiguous(b));
    CHECK(c->offset == 2 * 8 + 1);
  }
  sf_release(a);
  sf_release(b);
  sf_release(c);
  sf_statedict_close(sd);
}

static void test_torch_selfforcing(void) {
  if (!have_torch) return;
  compare_file("selfforcing");
  char path[512];
  snprintf(path, sizeof path, "%s/selfforcing.pt", dir);
  sf_statedict *sd = sf_statedict_open(path);
  CHECK(sd != NULL);
  if (!sd) return;
  CHECK(!strcmp(sf_statedict_format(sd), "pt"));
  const sf_sd_entry *e = sf_statedict_find(sd, "step");
  CHECK(e && e->kind == SF_SD_INT && e->i == 600);
  e = sf_statedict_find(sd, "lr");
  CHECK(e && e->kind == SF_SD_FLOAT && e->f == 2e-6);
  e = sf_statedict_find(sd, "name");
  CHECK(e && e->kind == SF_SD_STRING && !strcmp(e->str, "dmd"));
  e = sf_statedict_find(sd, "flag");
  CHECK(e && e->kind == SF_SD_BOOL && e->i == 1);
  e = sf_statedict_find(sd, "nothing");
  CHECK(e && e->kind == SF_SD_NONE);
  e = sf_statedict_find(sd, "betas.1");
  CHECK(e && e->kind == SF_SD_FLOAT && e->f == 0.999);
  e = sf_statedict_find(sd, "param_groups.0.params.1");
  CHECK(e && e->kind == SF_SD_INT && e->i == 1);
  e = sf_statedict_find(sd, "generator.model.head.head.weight");
  CHECK(e && e->kind == SF_SD_TENSOR && e->dtype == SF_BF16 && e->ndim == 2 && e->shape[0] == 2);
  CHECK(sf_statedict_find(sd, "generator._metadata") == NULL);
  CHECK(sf_statedict_get(sd, "generator.nope") == NULL);
  CHECK_ERROR_MENTIONS("generator.nope");
  CHECK(sf_statedict_get(sd, "step") == NULL);
  CHECK_ERROR_MENTIONS("not a tensor");
  sf_statedict_close(sd);
}

static void test_torch_params(void) {
  if (!have_torch) return;
  char path[512];
  snprintf(path, sizeof path, "%s/params.pt", dir);
  sf_statedict *sd = sf_statedict_open(path);
  CHECK(sd != NULL);
  if (!sd) return;
  sf_tensor *p = sf_statedict_get(sd, "p");
  CHECK(p && p->ndim == 2 && p->shape[1] == 3);
  sf_release(p);
  sf_statedict_close(sd);
}

static void test_refuses_module(void) {
  if (!have_torch) return;
  char path[512];
  snprintf(path, sizeof path, "%s/module.pt", dir);
  CHECK(sf_statedict_open(path) == NULL);
  CHECK_ERROR_MENTIONS("torch.nn.modules.linear.Linear");
  CHECK_ERROR_MENTIONS("module.pt");
  snprintf(path, sizeof path, "%s/int16.pt", dir);
  CHECK(sf_statedict_open(path) == NULL);
  CHECK_ERROR_MENTIONS("torch.ShortStorage");
  CHECK_ERROR_MENTIONS("dtype");
}

static sf_tensor *ramp(sf_dtype dt, int ndim, const int64_t *shape, double scale) {
  sf_tensor *f = sf_tensor_new(SF_F64, sf_cpu(), ndim, shape);
  int64_t n = sf_numel(f);
  for (int64_t i = 0; i < n; i++) ((double *)f->storage->data)[i] = (i - n / 2) * scale;
  sf_tensor *t = sf_cast(f, dt);
  sf_release(f);
  return t;
}

static void test_safetensors_roundtrip(void) {
  int64_t s1[2] = {3, 5}, s2[1] = {7}, s3[3] = {2, 1, 4}, s0[1] = {0};
  sf_tensor *t[5] = {ramp(SF_F32, 2, s1, 0.25), ramp(SF_BF16, 1, s2, 0.5), ramp(SF_I64, 3, s3, 3), ramp(SF_U8, 1, s2, 1),
                     ramp(SF_F16, 1, s0, 1)};
  for (int i = 0; i < 5; i++) CHECK(t[i] != NULL);
  sf_tensor *tr = sf_transpose(t[0], 0, 1); /* non-contiguous: must be packed */
  const char *names[6] = {"a.weight", "b", "c.idx", "d", "e", "a.t"};
  sf_tensor *all[6] = {t[0], t[1], t[2], t[3], t[4], tr};
  const char *mk[1] = {"format"}, *mv[1] = {"pt"};
  char path[512];
  snprintf(path, sizeof path, "%s/rt.safetensors", dir);
  CHECK(sf_safetensors_save(path, 6, names, all, 1, mk, mv) == 0);
  sf_statedict *sd = sf_statedict_open(path);
  CHECK(sd != NULL);
  if (sd) {
    CHECK(sf_statedict_count(sd) == 6);
    CHECK(!strcmp(sf_statedict_metadata(sd, "format"), "pt"));
    for (int i = 0; i < 6; i++) {
      sf_tensor *r = sf_statedict_get(sd, names[i]);
      CHECK(r && r->dtype == all[i]->dtype && sf_same_shape(r, all[i]));
      if (r) {
        CHECK(((uintptr_t)sf_data_ptr(r)) % sf_dtype_size(r->dtype) == 0);
        for (int64_t k = 0; k < sf_numel(r); k++) CHECK(elem(r, k) == elem(all[i], k));
      }
      sf_release(r);
    }
    sf_statedict_close(sd);
  }
  /* tensors outlive the statedict (the mapping is refcounted) */
  sd = sf_statedict_open(path);
  sf_tensor *keep = sd ? sf_statedict_get(sd, "a.weight") : NULL;
  sf_statedict_close(sd);
  CHECK(keep && elem(keep, 14) == elem(t[0], 14));
  sf_release(keep);
  /* the python reference reader (a transcription of the format) agrees */
  if (have_torch) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/io_check_safetensors.py %s", path);
    CHECK(run(cmd) == 0);
  }
  for (int i = 0; i < 5; i++) sf_release(t[i]);
  sf_release(tr);
}

/* header lengths whose first byte looks like JSON ('{', ' ', '\n') must still read as safetensors */
static void test_safetensors_header_length_bytes(void) {
  const unsigned char firsts[3] = {'{', ' ', '\n'};
  for (int k = 0; k < 3; k++) {
    char js[512];
    int base = snprintf(js, sizeof js, "{\"x\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}");
    size_t want = firsts[k];
    while (want < (size_t)base) want += 256;
    memset(js + base, ' ', want - base);
    js[want] = 0;
    unsigned char buf[1024] = {0};
    buf[0] = (unsigned char)(want & 0xff);
    buf[1] = (unsigned char)(want >> 8);
    memcpy(buf + 8, js, want);
    buf[8 + want] = 7;
    buf[9 + want] = 9;
    char path[512];
    snprintf(path, sizeof path, "%s/hl%d.safetensors", dir, k);
    FILE *f = fopen(path, "wb");
    fwrite(buf, 1, 10 + want, f);
    fclose(f);
    sf_statedict *sd = sf_statedict_open(path);
    CHECK(sd != NULL);
    if (!sd) continue;
    CHECK(!strcmp(sf_statedict_format(sd), "safetensors"));
    sf_tensor *t = sf_statedict_get(sd, "x");
    CHECK(t && ((uint8_t *)sf_data_ptr(t))[1] == 9);
    sf_release(t);
    sf_statedict_close(sd);
  }
}

/* a header length that leaves the data section at an odd offset: f32 data comes back aligned */
static void test_safetensors_unaligned(void) {
  const char *js = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  size_t jl = strlen(js); /* odd length: data starts at 8 + jl */
  unsigned char buf[256] = {0};
  buf[0] = (unsigned char)jl;
  memcpy(buf + 8, js, jl);
  float v[2] = {1.5f, -2.25f};
  memcpy(buf + 8 + jl, v, 8);
  char path[512];
  snprintf(path, sizeof path, "%s/odd.safetensors", dir);
  FILE *f = fopen(path, "wb");
  fwrite(buf, 1, 8 + jl + 8, f);
  fclose(f);
  sf_statedict *sd = sf_statedict_open(path);
  CHECK(sd != NULL);
  if (!sd) return;
  sf_tensor *t = sf_statedict_get(sd, "x");
  CHECK(t != NULL);
  if (t) {
    CHECK(((uintptr_t)sf_data_ptr(t)) % 4 == 0);
    CHECK(((float *)sf_data_ptr(t))[1] == -2.25f);
  }
  sf_release(t);
  sf_statedict_close(sd);
}

static void test_pt_writer_torch_reads(void) {
  if (!have_torch) return;
  int64_t s1[2] = {4, 6}, s2[1] = {5};
  sf_tensor *w = ramp(SF_F32, 2, s1, 0.125), *b = ramp(SF_BF16, 1, s2, 0.5), *ix = ramp(SF_I64, 1, s2, 2);
  sf_tensor *view = sf_narrow(w, 0, 1, 2), *tr = sf_transpose(w, 0, 1);
  for (int z64 = 0; z64 < 2; z64++) {
    char path[512], cmd[1024];
    snprintf(path, sizeof path, "%s/out%d.pt", dir, z64);
    if (z64) setenv("SFWB_ZIP64_LIMIT", "16", 1);
    sf_pt_writer *pw = sf_pt_writer_new();
    CHECK(sf_pt_begin_dict(pw, NULL) == 0);
    CHECK(sf_pt_begin_dict(pw, "generator") == 0);
    CHECK(sf_pt_tensor(pw, "model.w", w) == 0);
    CHECK(sf_pt_tensor(pw, "model.view", view) == 0);
    CHECK(sf_pt_tensor(pw, "model.t", tr) == 0);
    CHECK(sf_pt_tensor(pw, "model.b", b) == 0);
    CHECK(sf_pt_end(pw) == 0);
    CHECK(sf_pt_tensor(pw, "idx", ix) == 0);
    CHECK(sf_pt_int(pw, "step", 123456789012LL) == 0);
    CHECK(sf_pt_float(pw, "lr", 2e-6) == 0);
    CHECK(sf_pt_str(pw, "name", "héllo", strlen("héllo")) == 0);
    CHECK(sf_pt_begin_list(pw, "list") == 0);
    CHECK(sf_pt_bool(pw, NULL, 1) == 0);
    CHECK(sf_pt_none(pw, NULL) == 0);
    CHECK(sf_pt_int(pw, NULL, -5) == 0);
    CHECK(sf_pt_end(pw) == 0);
    CHECK(sf_pt_end(pw) == 0);
    CHECK(sf_pt_writer_save(pw, path) == 0);
    sf_pt_writer_free(pw);
    unsetenv("SFWB_ZIP64_LIMIT");
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/io_check_pt.py %s", path);
    CHECK(run(cmd) == 0);
    /* and sfwb reads its own file back, views still sharing */
    sf_statedict *sd = sf_statedict_open(path);
    CHECK(sd != NULL);
    if (sd) {
      sf_tensor *a = sf_statedict_get(sd, "generator.model.w"), *v = sf_statedict_get(sd, "generator.model.view");
      CHECK(a && v && a->storage == v->storage && v->offset == 6);
      sf_release(a);
      sf_release(v);
      sf_statedict_close(sd);
    }
  }
  sf_release(w);
  sf_release(b);
  sf_release(ix);
  sf_release(view);
  sf_release(tr);
}

static void write_bytes(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  fwrite(p, 1, n, f);
  fclose(f);
}

static void test_bad_input(void) {
  char path[512];
  snprintf(path, sizeof path, "%s/bad.safetensors", dir);
  /* header length past EOF */
  unsigned char h1[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
  write_bytes(path, h1, 10);
  CHECK(sf_statedict_open(path) == NULL);
  CHECK_ERROR_MENTIONS("exceeds the file size");
  CHECK_ERROR_MENTIONS("bad.safetensors");
  /* well-framed files whose JSON header is wrong: header, payload bytes after it, what the error names
   * (NULL: only that opening fails) */
  static const struct { const char *json; size_t payload; const char *mentions; } cases[] = {
      {"{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "past the end"},
      {"{\"x\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4, "F8_E4M3"}, /* a dtype sfwb does not hold */
      {"{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", 16, "need 12"},   /* wrong byte count */
      {"{\"x\":{\"dtype\":\"F32\",\"shape\":[1e400],\"data_offsets\":[0,4]}}", 4, NULL},     /* NaN-like shape */
      /* __metadata__ twice (found by fuzz_safetensors: once a heap overflow) */
      {"{\"__metadata__\":{\"a\":\"b\"},\"__metadata__\":{\"a\":\"b\",\"c\":\"d\"}}", 0, "twice"},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    unsigned char buf[256] = {0};
    const size_t jl = strlen(cases[c].json);
    buf[0] = (unsigned char)jl; /* little-endian u64 header length */
    memcpy(buf + 8, cases[c].json, jl);
    write_bytes(path, buf, 8 + jl + cases[c].payload);
    CHECK(sf_statedict_open(path) == NULL);
    if (cases[c].mentions) CHECK_ERROR_MENTIONS(cases[c].mentions);
  }
  /* unknown magic */
  snprintf(path, sizeof path, "%s/bad.bin", dir);
  write_bytes(path, "hello world, not a checkpoint", 29);
  CHECK(sf_statedict_open(path) == NULL);
  CHECK_ERROR_MENTIONS("unknown checkpoint format");
  /* a truncated torch zip */
  if (have_torch) {
    char src[512];
    snprintf(src, sizeof src, "%s/flat.pt", dir);
    FILE *f = fopen(src, "rb");
    static unsigned char z[1 << 16];
    size_t n = fread(z, 1, sizeof z, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/trunc.pt", dir);
    for (size_t cut = 1; cut < n; cut += 97) {
      write_bytes(path, z, n - cut);
      sf_statedict *sd = sf_statedict_open(path);
      if (sd) { /* a cut only inside the data of unused members may still open; reading must then fail cleanly */
        for (int i = 0; i < sf_statedict_count(sd); i++) sf_release(sf_statedict_get_entry(sd, sf_statedict_entry(sd, i)));
        sf_statedict_close(sd);
      }
    }
    /* a bad pickle opcode */
    snprintf(path, sizeof path, "%s/badop.pt", dir);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import zipfile; z=zipfile.ZipFile('%s','w'); z.writestr('a/data.pkl', b'\\x80\\x02\\xff.'); z.close()\"",
             path);
    CHECK(run(cmd) == 0);
    CHECK(sf_statedict_open(path) == NULL);
    CHECK_ERROR_MENTIONS("opcode 0xff");
  }
}

int main(void) {
  sf_backends_init();
  snprintf(dir, sizeof dir, "/tmp/sfwb-io-test-%d", (int)getpid());
  char cmd[600];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/io_make_pt.py %s", dir);
  have_torch = run(cmd) == 0;
  if (!have_torch) {
    printf("skip: python3-torch fixtures unavailable; torch interop cases are skipped\n");
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    run(cmd);
  }
  RUN(test_torch_flat);
  RUN(test_torch_views);
  RUN(test_torch_selfforcing);
  RUN(test_torch_params);
  RUN(test_refuses_module);
  RUN(test_safetensors_roundtrip);
  RUN(test_safetensors_header_length_bytes);
  RUN(test_safetensors_unaligned);
  RUN(test_pt_writer_torch_reads);
  RUN(test_bad_input);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (!getenv("SFWB_KEEP_TMP")) run(cmd);
  TEST_DONE();
}

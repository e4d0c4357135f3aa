/* zipread.c — zip central directory parsing (with zip64) over an in-memory archive. */
#include "io/zipread.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/error.h"

static uint64_t le(const unsigned char *b, int k) {
  uint64_t v = 0;
  for (int i = 0; i < k; i++) v |= (uint64_t)b[i] << (8 * i);
  return v;
}

void sf_zip_free(sf_zip *z) {
  for (int i = 0; i < z->n; i++) free(z->m[i].name);
  free(z->m);
  free(z->hash);
  z->m = NULL;
  z->hash = NULL;
  z->n = z->hcap = 0;
}

static uint64_t name_hash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

int sf_zip_parse(sf_zip *z, const unsigned char *d, size_t size, const char *what) {
  memset(z, 0, sizeof *z);
  if (size < 22) return sf_error("%s: not a zip archive (too short)", what);
  /* end of central directory: scan back over a possible comment */
  size_t eocd = (size_t)-1;
  size_t lo = size > 22 + 65535 ? size - 22 - 65535 : 0;
  for (size_t i = size - 22 + 1; i-- > lo;)
    if (d[i] == 'P' && le(d + i, 4) == 0x06054b50) {
      eocd = i;
      break;
    }
  if (eocd == (size_t)-1) return sf_error("%s: not a zip archive or truncated (no end-of-central-directory record)", what);
  uint64_t count = le(d + eocd + 10, 2), cd_size = le(d + eocd + 12, 4), cd_off = le(d + eocd + 16, 4);
  if ((count == 0xffff || cd_size == 0xffffffffu || cd_off == 0xffffffffu) && eocd >= 20 &&
      le(d + eocd - 20, 4) == 0x07064b50) {
    uint64_t z64 = le(d + eocd - 20 + 8, 8);
    if (z64 > size || size - z64 < 56 || le(d + z64, 4) != 0x06064b50)
      return sf_error("%s: corrupt zip64 end-of-central-directory record", what);
    count = le(d + z64 + 32, 8);
    cd_size = le(d + z64 + 40, 8);
    cd_off = le(d + z64 + 48, 8);
  }
  if (cd_off > size || cd_size > size - cd_off)
    return sf_error("%s: zip central directory lies past the end of the file (truncated?)", what);
  if (count > cd_size / 46) return sf_error("%s: zip central directory claims %llu entries in %llu bytes", what,
                                            (unsigned long long)count, (unsigned long long)cd_size);
  z->m = calloc(count ? count : 1, sizeof *z->m);
  if (!z->m) return sf_error("%s: out of memory", what);
  const unsigned char *p = d + cd_off, *end = d + cd_off + cd_size;
  for (uint64_t k = 0; k < count; k++) {
    if (end - p < 46 || le(p, 4) != 0x02014b50) {
      sf_zip_free(z);
      return sf_error("%s: corrupt zip central directory entry %llu", what, (unsigned long long)k);
    }
    uint64_t method = le(p + 10, 2), csz = le(p + 20, 4), usz = le(p + 24, 4), nlen = le(p + 28, 2),
             xlen = le(p + 30, 2), clen = le(p + 32, 2), lho = le(p + 42, 4);
    if ((uint64_t)(end - p) < 46 + nlen + xlen + clen) {
      sf_zip_free(z);
      return sf_error("%s: corrupt zip central directory entry %llu", what, (unsigned long long)k);
    }
    /* zip64 extra: the fields that overflowed, in the order usize, csize, offset */
    const unsigned char *x = p + 46 + nlen, *xe = x + xlen;
    while (xe - x >= 4) {
      uint64_t id = le(x, 2), sz = le(x + 2, 2);
      if ((uint64_t)(xe - x - 4) < sz) break;
      if (id == 1) {
        const unsigned char *f = x + 4, *fe = f + sz;
        if (usz == 0xffffffffu && fe - f >= 8) { usz = le(f, 8); f += 8; }
        if (csz == 0xffffffffu && fe - f >= 8) { csz = le(f, 8); f += 8; }
        if (lho == 0xffffffffu && fe - f >= 8) { lho = le(f, 8); f += 8; }
      }
      x += 4 + sz;
    }
    sf_zip_member *m = &z->m[z->n];
    m->name = malloc(nlen + 1);
    if (!m->name) {
      sf_zip_free(z);
      return sf_error("%s: out of memory", what);
    }
    memcpy(m->name, p + 46, nlen);
    m->name[nlen] = 0;
    z->n++;
    m->method = (uint16_t)method;
    m->crc = (uint32_t)le(p + 16, 4);
    m->comp_size = csz;
    m->size = usz;
    if (lho > size || size - lho < 30 || le(d + lho, 4) != 0x04034b50) {
      int rc = sf_error("%s: zip member '%s' has a corrupt local header (truncated file?)", what, m->name);
      sf_zip_free(z);
      return rc;
    }
    m->data_off = lho + 30 + le(d + lho + 26, 2) + le(d + lho + 28, 2);
    if (m->data_off > size || csz > size - m->data_off) {
      int rc = sf_error("%s: zip member '%s' (%llu bytes) runs past the end of the file (truncated?)", what, m->name,
                        (unsigned long long)csz);
      sf_zip_free(z);
      return rc;
    }
    if (method == 0 && csz != usz) {
      int rc = sf_error("%s: zip member '%s' is stored but its sizes differ", what, m->name);
      sf_zip_free(z);
      return rc;
    }
    p += 46 + nlen + xlen + clen;
  }
  int cap = 16;
  while (cap < z->n * 2) cap *= 2;
  z->hash = calloc(cap, sizeof *z->hash);
  if (!z->hash) {
    sf_zip_free(z);
    return sf_error("%s: out of memory", what);
  }
  z->hcap = cap;
  for (int i = 0; i < z->n; i++) { /* the first of duplicate names wins, as a linear search would */
    uint64_t j = name_hash(z->m[i].name) & (cap - 1);
    int dup = 0;
    while (z->hash[j] && !(dup = !strcmp(z->m[z->hash[j] - 1].name, z->m[i].name))) j = (j + 1) & (cap - 1);
    if (!dup) z->hash[j] = i + 1;
  }
  return 0;
}

const sf_zip_member *sf_zip_find(const sf_zip *z, const char *name) {
  if (!z->hcap) return NULL;
  for (uint64_t j = name_hash(name) & (z->hcap - 1); z->hash[j]; j = (j + 1) & (z->hcap - 1))
    if (!strcmp(z->m[z->hash[j] - 1].name, name)) return &z->m[z->hash[j] - 1];
  return NULL;
}

int sf_zip_read(const sf_zip_member *m, const unsigned char *data, size_t size, const char *what,
                const unsigned char **out, int *owned) {
  (void)size;
  *owned = 0;
  if (m->method == 0) {
    if (sf_zip_check_crc(m, data + m->data_off, m->size, what)) return -1;
    *out = data + m->data_off;
    return 0;
  }
  if (m->method != 8) return sf_error("%s: zip member '%s' uses compression method %u (only stored and deflate are read)", what, m->name, m->method);
  if (m->size > ((uint64_t)1 << 40)) return sf_error("%s: zip member '%s' claims an implausible size", what, m->name);
  unsigned char *buf = malloc(m->size ? m->size : 1);
  if (!buf) return sf_error("%s: out of memory inflating '%s' (%llu bytes)", what, m->name, (unsigned long long)m->size);
  z_stream s;
  memset(&s, 0, sizeof s);
  if (inflateInit2(&s, -MAX_WBITS) != Z_OK) {
    free(buf);
    return sf_error("%s: zlib init failed", what);
  }
  const unsigned char *src = data + m->data_off;
  uint64_t in_left = m->comp_size, out_done = 0;
  int zr = Z_OK;
  while (zr == Z_OK) {
    uInt cin = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
    uInt cout = m->size - out_done > (1u << 30) ? (1u << 30) : (uInt)(m->size - out_done);
    s.next_in = (Bytef *)src;
    s.avail_in = cin;
    s.next_out = buf + out_done;
    s.avail_out = cout;
    zr = inflate(&s, Z_NO_FLUSH);
    src += cin - s.avail_in;
    in_left -= cin - s.avail_in;
    out_done += cout - s.avail_out;
    if (zr == Z_OK && cin == s.avail_in && cout == s.avail_out) zr = Z_BUF_ERROR;
  }
  inflateEnd(&s);
  if (zr != Z_STREAM_END || out_done != m->size) {
    free(buf);
    return sf_error("%s: zip member '%s' is corrupt (inflate failed)", what, m->name);
  }
  if (sf_zip_check_crc(m, buf, m->size, what)) {
    free(buf);
    return -1;
  }
  *out = buf;
  *owned = 1;
  return 0;
}

int sf_zip_check_crc(const sf_zip_member *m, const unsigned char *bytes, uint64_t n, const char *what) {
  uLong c = crc32_z(0L, Z_NULL, 0);
  c = crc32_z(c, bytes, (z_size_t)n);
  if ((uint32_t)c != m->crc)
    return sf_error("%s: zip member '%s' is corrupt: its CRC-32 is %08x, the archive records %08x (a damaged or "
                    "altered file)", what, m->name, (unsigned)c, (unsigned)m->crc);
  return 0;
}

/* text_clean.c — Wan's prompt cleaning (tokenizers.py clean='whitespace') on UTF-8 text: an ftfy
 * subset, Python's html.unescape (twice) and Unicode whitespace collapsing. */
#include "io/text_clean.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* ---- a growable byte buffer ---- */
typedef struct { char *p; size_t n, cap; } sbuf;

static int sb_put(sbuf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 64;
    while (cap < b->n + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return sf_error("text cleaning: out of memory");
    b->p = p, b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
  return 0;
}

static int sb_cp(sbuf *b, uint32_t c) {
  char u[4];
  size_t n;
  if (c < 0x80) u[0] = (char)c, n = 1;
  else if (c < 0x800) u[0] = (char)(0xc0 | (c >> 6)), u[1] = (char)(0x80 | (c & 0x3f)), n = 2;
  else if (c < 0x10000) {
    u[0] = (char)(0xe0 | (c >> 12)), u[1] = (char)(0x80 | ((c >> 6) & 0x3f)), u[2] = (char)(0x80 | (c & 0x3f));
    n = 3;
  } else {
    u[0] = (char)(0xf0 | (c >> 18)), u[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    u[2] = (char)(0x80 | ((c >> 6) & 0x3f)), u[3] = (char)(0x80 | (c & 0x3f));
    n = 4;
  }
  return sb_put(b, u, n);
}

static char *sb_finish(sbuf *b) {
  if (!b->p && sb_put(b, "", 0)) return NULL;
  return b->p;
}

/* decode one code point at s (length in *len); invalid bytes decode as themselves (U+FFFD would
 * change the byte count, and Python never sees invalid UTF-8 here since Lua strings come from files) */
static uint32_t utf8_next(const unsigned char *s, int *len) {
  unsigned c = s[0];
  if (c < 0x80) { *len = 1; return c; }
  int n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
  if (n == 1) { *len = 1; return c; }
  uint32_t v = c & (0x3f >> (n - 1));
  for (int i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80) { *len = 1; return c; }
    v = (v << 6) | (s[i] & 0x3f);
  }
  *len = n;
  return v;
}

/* ---- html.unescape ---- */
static const char *entity_lookup(const char *name, size_t n) {
  int lo = 0, hi = sf_html_entities_count - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    const char *k = sf_html_entities[mid].name;
    size_t kn = strlen(k);
    int c = memcmp(k, name, kn < n ? kn : n);
    if (c == 0) c = kn < n ? -1 : kn > n ? 1 : 0;
    if (c == 0) return sf_html_entities[mid].value;
    if (c < 0) lo = mid + 1; else hi = mid - 1;
  }
  return NULL;
}

static int numeric_charref(sbuf *b, uint64_t num) {
  for (int i = 0; i < sf_html_invalid_charrefs_count; i++)
    if (sf_html_invalid_charrefs[i].code == num)
      return sb_put(b, sf_html_invalid_charrefs[i].value, strlen(sf_html_invalid_charrefs[i].value));
  if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return sb_cp(b, 0xfffd);
  for (int i = 0; i < sf_html_invalid_codepoints_count; i++)
    if (sf_html_invalid_codepoints[i] == num) return 0;
  return sb_cp(b, (uint32_t)num);
}

static int is_name_stop(unsigned char c) {
  return c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' || c == ';';
}

char *sf_html_unescape(const char *src) {
  const unsigned char *s = (const unsigned char *)src;
  sbuf b = {0};
  size_t i = 0, len = strlen(src);
  while (i < len) {
    if (s[i] != '&') {
      size_t j = i;
      while (j < len && s[j] != '&') j++;
      if (sb_put(&b, (const char *)s + i, j - i)) goto fail;
      i = j;
      continue;
    }
    size_t p = i + 1;
    if (p < len && s[p] == '#') {
      int hex = p + 1 < len && (s[p + 1] == 'x' || s[p + 1] == 'X');
      size_t q = p + 1 + hex, d0 = q;
      uint64_t num = 0;
      while (q < len && (hex ? (s[q] >= '0' && s[q] <= '9') || ((s[q] | 32) >= 'a' && (s[q] | 32) <= 'f')
                             : (s[q] >= '0' && s[q] <= '9'))) {
        unsigned d = s[q] <= '9' ? s[q] - '0' : (s[q] | 32) - 'a' + 10;
        if (num < ((uint64_t)1 << 40)) num = num * (hex ? 16 : 10) + d; /* saturates above 0x10ffff */
        q++;
      }
      if (q == d0) { /* '&#' without digits: no reference, the '&' is literal */
        if (sb_put(&b, "&", 1)) goto fail;
        i = p;
        continue;
      }
      if (q < len && s[q] == ';') q++;
      if (numeric_charref(&b, num)) goto fail;
      i = q;
      continue;
    }
    /* named: 1..32 code points outside "\t\n\f <&#;", then an optional ';' */
    size_t q = p;
    int count = 0;
    while (q < len && count < 32 && !is_name_stop(s[q])) {
      int l;
      utf8_next(s + q, &l);
      q += l, count++;
    }
    if (count == 0) {
      if (sb_put(&b, "&", 1)) goto fail;
      i = p;
      continue;
    }
    if (q < len && s[q] == ';') q++;
    const char *name = (const char *)s + p;
    size_t n = q - p;
    const char *v = entity_lookup(name, n);
    if (v) {
      if (sb_put(&b, v, strlen(v))) goto fail;
    } else {
      /* longest known prefix of at least 2 code points (here: bytes of ASCII names; every entity
       * name is ASCII, so a prefix ending inside a multi-byte character never matches) */
      size_t x;
      for (x = n - 1; x >= 2; x--)
        if ((v = entity_lookup(name, x))) break;
      if (v && x >= 2) {
        if (sb_put(&b, v, strlen(v)) || sb_put(&b, name + x, n - x)) goto fail;
      } else {
        if (sb_put(&b, "&", 1) || sb_put(&b, name, n)) goto fail;
      }
    }
    i = q;
  }
  return sb_finish(&b);
fail:
  free(b.p);
  return NULL;
}

/* ---- ftfy subset ---- */
static int is_ftfy_removed_control(uint32_t c) {
  return c <= 0x08 || c == 0x0b || (c >= 0x0e && c <= 0x1f) || c == 0x7f || (c >= 0x206a && c <= 0x206f) ||
         c == 0xfeff || (c >= 0xfff9 && c <= 0xfffc);
}

char *sf_ftfy_subset(const char *src) {
  /* ftfy unescapes HTML itself first when the text has no '<' ("auto"), so that &rsquo; is uncurled too */
  char *pre = NULL;
  if (!strchr(src, '<')) {
    if (!(pre = sf_html_unescape(src))) return NULL;
    src = pre;
  }
  const unsigned char *s = (const unsigned char *)src;
  sbuf b = {0};
  size_t i = 0, len = strlen(src);
  while (i < len) {
    int l;
    uint32_t c = utf8_next(s + i, &l);
    int rc = 0;
    if (c >= 0x80 && c <= 0x9f) {
      /* fix_c1_controls: C1 characters are Windows-1252 bytes decoded as Latin-1 */
      int done = 0;
      for (int k = 0; k < sf_html_invalid_charrefs_count; k++)
        if (sf_html_invalid_charrefs[k].code == c) {
          rc = sb_put(&b, sf_html_invalid_charrefs[k].value, strlen(sf_html_invalid_charrefs[k].value));
          done = 1;
          break;
        }
      if (!done) rc = sb_put(&b, (const char *)s + i, l);
    } else if (c == 0x2bc || (c >= 0x2018 && c <= 0x201b)) {
      rc = sb_put(&b, "'", 1);
    } else if (c >= 0x201c && c <= 0x201f) {
      rc = sb_put(&b, "\"", 1);
    } else if (c == '\r') {
      /* fix_line_breaks: \r\n and lone \r become \n */
      if (i + 1 < len && s[i + 1] == '\n') l = 2;
      rc = sb_put(&b, "\n", 1);
    } else if (c == 0x2028 || c == 0x2029 || c == 0x85) {
      rc = sb_put(&b, "\n", 1);
    } else if (is_ftfy_removed_control(c)) {
      rc = 0;
    } else {
      rc = sb_put(&b, (const char *)s + i, l);
    }
    if (rc) { free(b.p); free(pre); return NULL; }
    i += l;
  }
  free(pre);
  return sb_finish(&b);
}

/* ---- whitespace ---- */
/* regex's \s (Unicode White_Space) */
static int is_white_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}
/* Python's str.isspace (what str.strip removes): White_Space plus the separators U+001C..U+001F */
static int is_py_space(uint32_t c) { return is_white_space(c) || (c >= 0x1c && c <= 0x1f); }

static char *strip_py(const char *src) {
  const unsigned char *s = (const unsigned char *)src;
  size_t len = strlen(src), a = 0, e = len;
  while (a < len) {
    int l;
    uint32_t c = utf8_next(s + a, &l);
    if (!is_py_space(c)) break;
    a += l;
  }
  /* scan forward remembering the end of the last non-space character */
  size_t i = a;
  e = a;
  while (i < len) {
    int l;
    uint32_t c = utf8_next(s + i, &l);
    i += l;
    if (!is_py_space(c)) e = i;
  }
  char *out = malloc(e - a + 1);
  if (!out) { sf_error("text cleaning: out of memory"); return NULL; }
  memcpy(out, src + a, e - a);
  out[e - a] = 0;
  return out;
}

static char *collapse_ws(const char *src) {
  const unsigned char *s = (const unsigned char *)src;
  sbuf b = {0};
  size_t i = 0, len = strlen(src);
  while (i < len) {
    int l;
    uint32_t c = utf8_next(s + i, &l);
    if (is_white_space(c)) {
      while (i < len) {
        c = utf8_next(s + i, &l);
        if (!is_white_space(c)) break;
        i += l;
      }
      if (sb_put(&b, " ", 1)) { free(b.p); return NULL; }
      continue;
    }
    if (sb_put(&b, (const char *)s + i, l)) { free(b.p); return NULL; }
    i += l;
  }
  return sb_finish(&b);
}

char *sf_text_clean_whitespace(const char *s) {
  char *a = sf_ftfy_subset(s), *b = NULL, *c = NULL, *d = NULL, *e = NULL;
  if (!a) return NULL;
  if (!(b = sf_html_unescape(a))) goto done;
  if (!(c = sf_html_unescape(b))) goto done;
  if (!(d = strip_py(c))) goto done;
  if (!(e = collapse_ws(d))) goto done;
  free(a), free(b), free(c), free(d);
  a = e;
  e = strip_py(a);
  free(a);
  return e;
done:
  free(a), free(b), free(c), free(d);
  return NULL;
}

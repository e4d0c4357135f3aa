/* zipread.h — the central directory of a zip archive held in memory (an mmapped torch.save file),
 * with zip64; members stored uncompressed are addressed in place, deflated ones are inflated. */
#ifndef SF_IO_ZIPREAD_H
#define SF_IO_ZIPREAD_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  char *name;
  uint16_t method;      /* 0 stored, 8 deflate */
  uint64_t comp_size, size;
  uint64_t data_off;    /* offset of the member's bytes in the archive */
  uint32_t crc;         /* CRC-32 of the uncompressed bytes, from the central directory */
} sf_zip_member;

typedef struct {
  int n;
  sf_zip_member *m;
  int *hash; /* name -> index + 1, for archives with thousands of members */
  int hcap;
} sf_zip;

/* parse; `what` names the file in errors. Returns -1 + error on a malformed archive. */
int sf_zip_parse(sf_zip *z, const unsigned char *data, size_t size, const char *what);
void sf_zip_free(sf_zip *z);
const sf_zip_member *sf_zip_find(const sf_zip *z, const char *name);
/* the member's bytes: a pointer into data when stored, else a malloc'd inflated copy (*owned = 1);
 * either way their CRC-32 is checked against the central directory (a flipped bit is an error) */
int sf_zip_read(const sf_zip_member *m, const unsigned char *data, size_t size, const char *what,
                const unsigned char **out, int *owned);

/* checks n bytes of m (its uncompressed content) against its CRC-32; -1 + an error naming the member */
int sf_zip_check_crc(const sf_zip_member *m, const unsigned char *bytes, uint64_t n, const char *what);

#endif

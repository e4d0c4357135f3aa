/* mapfile.h — a refcounted private mmap of a whole file; storages point into it without copying. */
#ifndef SF_IO_MAPFILE_H
#define SF_IO_MAPFILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

typedef struct sf_mapfile {
  int refcount;
  unsigned char *base; /* NULL for an empty file */
  size_t size;
  char *path;
} sf_mapfile;

/* MAP_PRIVATE + PROT_WRITE: writes into loaded tensors are copy-on-write and never reach the file */
sf_mapfile *sf_mapfile_open(const char *path);
void sf_mapfile_retain(sf_mapfile *m);
void sf_mapfile_release(sf_mapfile *m); /* NULL-safe */
/* a CPU storage of bytes [off, off+nbytes) of the mapping (bounds-checked; holds a reference to m) */
sf_storage *sf_mapfile_storage(sf_mapfile *m, uint64_t off, uint64_t nbytes);

#endif

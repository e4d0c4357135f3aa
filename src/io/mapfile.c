/* mapfile.c — refcounted private file mappings backing zero-copy tensor storages. */
#include "io/mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

sf_mapfile *sf_mapfile_open(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return sf_error("%s: cannot open: %s", path, strerror(errno)), NULL;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    sf_error("%s: cannot stat: %s", path, strerror(errno));
    close(fd);
    return NULL;
  }
  if (S_ISDIR(st.st_mode)) {
    close(fd);
    return sf_error("%s: is a directory, not a file", path), NULL;
  }
  sf_mapfile *m = calloc(1, sizeof *m);
  if (!m) {
    close(fd);
    return sf_error("%s: out of memory", path), NULL;
  }
  m->refcount = 1;
  m->size = (size_t)st.st_size;
  m->path = strdup(path);
  if (m->size > 0) {
    void *p = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      sf_error("%s: cannot mmap %zu bytes: %s", path, m->size, strerror(errno));
      close(fd);
      free(m->path);
      free(m);
      return NULL;
    }
    m->base = p;
  }
  close(fd);
  return m;
}

void sf_mapfile_retain(sf_mapfile *m) { __atomic_add_fetch(&m->refcount, 1, __ATOMIC_RELAXED); }

void sf_mapfile_release(sf_mapfile *m) {
  if (!m) return;
  if (__atomic_sub_fetch(&m->refcount, 1, __ATOMIC_ACQ_REL) != 0) return;
  if (m->base) munmap(m->base, m->size);
  free(m->path);
  free(m);
}

static void mapfile_storage_release(sf_storage *s) { sf_mapfile_release((sf_mapfile *)s->ctx); }

sf_storage *sf_mapfile_storage(sf_mapfile *m, uint64_t off, uint64_t nbytes) {
  if (off > m->size || nbytes > m->size - off)
    return sf_error("%s: data [%llu, %llu) lies past the end of the file (%zu bytes)", m->path,
                    (unsigned long long)off, (unsigned long long)(off + nbytes), m->size),
           NULL;
  sf_mapfile_retain(m);
  sf_storage *s = sf_storage_wrap(sf_cpu(), m->base ? m->base + off : NULL, (size_t)nbytes,
                                  mapfile_storage_release, m);
  if (!s) sf_mapfile_release(m);
  return s;
}

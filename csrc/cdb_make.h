/* cdb_make.h: writing cdb files, byte for byte as djb's cdb_make does.
 *
 * Records go out through a buffer in the order they are added, duplicates
 * kept; the hash tables and the header are written by cdb_make_finish().
 * Memory grows by 8 bytes a record (its hash and position), whatever the
 * size of keys and data.  The caller opens, syncs, closes and renames. */
#ifndef CDBRULES_CDB_MAKE_H
#define CDBRULES_CDB_MAKE_H

#include <stddef.h>
#include <stdint.h>

struct cdb_make_chunk;

struct cdb_make {
  int fd;
  uint64_t pos;   /* where the next record goes */
  uint64_t limit; /* the largest file allowed: CDB_MAX_SIZE unless lowered for a test */
  uint64_t records;
  int overlimit;  /* 1 once an add was refused for passing limit (EFBIG): tells
                     it from the EFBIG of a write past RLIMIT_FSIZE */
  unsigned char *buf; /* output buffer */
  size_t buflen;      /* bytes waiting in it */
  struct cdb_make_chunk *head[256];
  struct cdb_make_chunk *tail[256];
  uint32_t count[256];
};

/* Start a file on fd (which must be open for writing and seekable).
 * Return 0, or -1 with errno set (ENOMEM, or from lseek). */
int cdb_make_start(struct cdb_make *m, int fd);

/* Append a record.  Return 0, or -1 with errno: EFBIG when the file would
 * pass m->limit (djb's cdb_make says ENOMEM there), ENOMEM when memory runs
 * out, or the error of write(). */
int cdb_make_add(struct cdb_make *m, const void *key, size_t klen, const void *data, size_t dlen);

/* The same in pieces, for a record that arrives as a stream: addbegin()
 * with the lengths (it checks the limit as add() does and writes the
 * record's header), then exactly klen + dlen bytes of key and data through
 * addbytes(), then addend() with the same lengths and the key's hash.
 * Each returns 0, or -1 with errno as add() does; after an error the file
 * is to be abandoned. */
int cdb_make_addbegin(struct cdb_make *m, size_t klen, size_t dlen);
int cdb_make_addbytes(struct cdb_make *m, const void *p, size_t len);
int cdb_make_addend(struct cdb_make *m, size_t klen, size_t dlen, uint32_t hash);

/* Write the tables and the header.  Return 0 or -1 with errno. */
int cdb_make_finish(struct cdb_make *m);

/* Release the memory; the fd is the caller's.  Safe to call twice. */
void cdb_make_free(struct cdb_make *m);

#endif

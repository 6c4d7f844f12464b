/* cdb.h: reading cdb files (D. J. Bernstein's constant database format).
 *
 * The caller maps the file and hands the bytes to cdb_init(); nothing here
 * does I/O or keeps global state.  A struct cdb is read-only after
 * cdb_init(), so one of them serves any number of threads; the state of a
 * search lives in the caller's struct cdb_find.
 *
 * Every function that reads the map checks the offsets it is about to use
 * against the size first: a corrupt or hostile file gives -1 with
 * errno = EPROTO, never an access outside the map or an endless loop.
 *
 * Return values follow djb: -1 error (errno set), 0 not found, 1 found. */
#ifndef CDBRULES_CDB_H
#define CDBRULES_CDB_H

#include <stddef.h>
#include <stdint.h>

#define CDB_HEADER_SIZE 2048u
#define CDB_HASH_START 5381u
#define CDB_MAX_SIZE 0xffffffffu /* the format's 32-bit offsets */

struct cdb {
  const unsigned char *map; /* the whole file */
  uint32_t size;            /* its length, CDB_HEADER_SIZE .. CDB_MAX_SIZE */
  uint32_t dend;            /* end of the records: where table 0 starts */
  const unsigned char *seen; /* NULL, or the bitmap of cdb_seen_build() */
  unsigned seen_shift;
};

struct cdb_find {
  const struct cdb *cdb;
  const unsigned char *key;
  uint32_t klen;
  uint32_t hash;
  uint32_t tpos;  /* start of this key's hash table */
  uint32_t slots; /* slots in it */
  uint32_t slot;  /* the next slot to look at */
  uint32_t left;  /* slots still to look at */
  uint32_t rpos;  /* found: where the record starts */
  uint32_t dpos;  /* found: where its data starts */
  uint32_t dlen;  /* found: its data length */
};

/* The djb hash of a key. */
uint32_t cdb_hash(const void *key, size_t len);

/* Point c at a mapped file of size bytes.
 * Return 0, or -1 with errno EPROTO if it is too small or too large to be a cdb. */
int cdb_init(struct cdb *c, const void *map, size_t size);

/* Start a search for key; cdb_findnext() then returns its records in file order.
 * Return 0, or -1 with errno EBADF when c was never initialised (map NULL:
 * how the Python layer marks a closed reader). */
int cdb_findstart(struct cdb_find *f, const struct cdb *c, const void *key, size_t klen);

/* cdb_findstart() for a caller that already has hash = cdb_hash(key, klen). */
int cdb_findstart_hash(struct cdb_find *f, const struct cdb *c, const void *key, size_t klen, uint32_t hash);

/* Return 1 and set f->rpos, f->dpos, f->dlen for the next record of the key;
 * 0 when there are no more; -1 with errno EPROTO on a corrupt file. */
int cdb_findnext(struct cdb_find *f);

/* The first record of key: 1 and *rpos set, 0 not found, -1 EPROTO. */
int cdb_find(const struct cdb *c, const void *key, size_t klen, uint32_t *rpos);

/* Where the first value of key lies, packed as (start << 32 | end): the
 * value is map[start:end].  0 when absent, 1 on error (errno EPROTO: a
 * corrupt file; EBADF: no map).  A found value packs to more than 1, as
 * data never starts before offset 8.  (One return value, no out-pointers:
 * this is the call Python makes per lookup, and each cffi argument costs.) */
uint64_t cdb_get(const struct cdb *c, const char *key, size_t klen);

/* Read the record at *pos, the first one being at CDB_HEADER_SIZE: set *klen
 * and *dlen (the key starts at *pos + 8) and move *pos past it.
 * Return 1, 0 at the end of the records, -1 EPROTO if it does not fit. */
int cdb_seqnext(const struct cdb *c, uint32_t *pos, uint32_t *klen, uint32_t *dlen);

/* Fill out with up to max records from *pos on, three numbers each:
 * key position, key length, data length.  Return how many, -1 EPROTO. */
long cdb_seqbatch(const struct cdb *c, uint32_t *pos, uint32_t *out, size_t max);

/* The record at rpos (as cdb_find() gives it): where its key and data are.
 * Return 0, -1 EPROTO if it does not fit in the file. */
int cdb_record(const struct cdb *c, uint32_t rpos, uint32_t *kpos, uint32_t *klen, uint32_t *dpos,
               uint32_t *dlen);

/* cdb_record() in one number, for callers that pay per out-pointer (Python):
 * (key end << 32 | data end).  The key starts at rpos + CDB_RECORD_HEAD and
 * ends where the data starts.  UINT64_MAX with errno EPROTO if the record
 * does not fit in the file. */
#define CDB_RECORD_HEAD 8u
uint64_t cdb_recspan(const struct cdb *c, uint32_t rpos);

/* The bitmap of the hashes the file holds, which lets a search for most
 * absent keys end without reading the hash tables (cdb_seen.c): its size in
 * bytes, or 0 when the file gains nothing from one (it is small enough to
 * stay in the caches) or cannot have one (a hash table outside the file). */
size_t cdb_seen_size(const struct cdb *c);
#ifndef CDB_SEEN_MIN_SIZE /* the fuzz build lowers it, to reach both paths */
#define CDB_SEEN_MIN_SIZE (4u << 20) /* smaller files stay in the caches: no gain there */
#endif

/* Fill bits (nbytes = cdb_seen_size(c)) and make c's searches use it; bits
 * must outlive c.  Call it before c is shared: it writes c.  Return 0, or -1
 * with errno EINVAL when nbytes is not cdb_seen_size(c). */
int cdb_seen_build(struct cdb *c, unsigned char *bits, size_t nbytes);

/* How many records the file holds; -1 EPROTO. */
long long cdb_count(const struct cdb *c);

#endif

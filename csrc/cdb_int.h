/* cdb_int.h: helpers shared by the cdbrules C files, not part of any API. */
#ifndef CDBRULES_CDB_INT_H
#define CDBRULES_CDB_INT_H

#include <stdint.h>
#include <string.h>
#include "cdb.h"

#if defined(__GNUC__)
#define internal_function __attribute__((visibility("hidden")))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#else
#define internal_function
#define likely(x) (x)
#define unlikely(x) (x)
#endif

/* Write all len bytes to fd (retrying after EINTR and short writes).  Return 0 or -1. */
int cdb_write_all(int fd, const void *buf, size_t len) internal_function;

static inline uint32_t
cdb_unpack(const unsigned char *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void
cdb_pack(unsigned char *p, uint32_t v)
{
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16);
  p[3] = (unsigned char)(v >> 24);
}

static inline uint32_t
cdb_hash_step(uint32_t h, unsigned char c)
{
  return (h + (h << 5)) ^ c;
}

/* Where hash falls in a seen bitmap of 2^(32 - shift) bits (cdb_seen.c):
 * Fibonacci hashing, so that all 32 bits of the hash pick the bit. */
static inline uint32_t
cdb_seen_index(uint32_t hash, unsigned shift)
{
  return (uint32_t)((uint64_t)(uint32_t)(hash * 0x9E3779B1u) >> shift);
}

/* Whether c may hold a record with this hash: 0 only when it holds none. */
static inline int
cdb_seen(const struct cdb *c, uint32_t hash)
{
  uint32_t at;
  if (!c->seen)
    return 1;
  at = cdb_seen_index(hash, c->seen_shift);
  return c->seen[at >> 3] >> (at & 7) & 1;
}

#endif

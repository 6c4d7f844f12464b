/* cdb_int.h: helpers shared by the cdbrules C files, not part of any API. */
#ifndef CDBRULES_CDB_INT_H
#define CDBRULES_CDB_INT_H

#include <stdint.h>
#include <string.h>

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

#endif

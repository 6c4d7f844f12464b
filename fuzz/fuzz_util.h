/* fuzz_util.h: what the three harnesses share.
 *
 * Harness code, not part of the library: it may abort() (that is how a
 * harness reports a broken property to libFuzzer) and it writes cdb files
 * into memfds so no run touches the disk.  Files that the harness checks
 * are copied into a malloc'd buffer of their exact size, so AddressSanitizer
 * sees any read past the end (a mapping would hide it up to the page end). */
#ifndef CDBRULES_FUZZ_UTIL_H
#define CDBRULES_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* A broken property: say which and stop, so libFuzzer saves the input. */
#define FZ_CHECK(cond)                                                                  \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      fprintf(stderr, "fuzz property failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      abort();                                                                          \
    }                                                                                   \
  } while (0)

static inline uint32_t
fz_u32(const unsigned char *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A fresh empty in-memory file. */
static inline int
fz_memfd(void)
{
  int fd = memfd_create("cdbrules-fuzz", MFD_CLOEXEC);
  FZ_CHECK(fd >= 0);
  return fd;
}

/* The whole content of fd in a buffer of exactly that size (*len set).
 * A zero-length file gives a 1-byte buffer, so the result is never NULL. */
static inline unsigned char *
fz_slurp(int fd, size_t *len)
{
  off_t end = lseek(fd, 0, SEEK_END);
  unsigned char *b;
  size_t got = 0;
  FZ_CHECK(end >= 0);
  b = malloc(end ? (size_t)end : 1);
  FZ_CHECK(b != NULL);
  while (got < (size_t)end) {
    ssize_t r = pread(fd, b + got, (size_t)end - got, (off_t)got);
    FZ_CHECK(r > 0);
    got += (size_t)r;
  }
  *len = (size_t)end;
  return b;
}

/* A copy of s[0..n) in a buffer of exactly n bytes (1 when n is 0). */
static inline unsigned char *
fz_dup(const void *s, size_t n)
{
  unsigned char *b = malloc(n ? n : 1);
  FZ_CHECK(b != NULL);
  if (n)
    memcpy(b, s, n);
  return b;
}

#endif

/* cdb_seq.c: walk the records in file order, every read checked. */
#include <errno.h>
#include "cdb.h"
#include "cdb_int.h"

int
cdb_seqnext(const struct cdb *c, uint32_t *pos, uint32_t *klen, uint32_t *dlen)
{
  uint32_t p = *pos;
  uint64_t end;
  if (p >= c->dend)
    return 0;
  if ((uint64_t)p + 8 > c->dend)
    return errno = EPROTO, -1;
  *klen = cdb_unpack(c->map + p);
  *dlen = cdb_unpack(c->map + p + 4);
  end = (uint64_t)p + 8 + *klen + *dlen;
  if (end > c->dend)
    return errno = EPROTO, -1;
  *pos = (uint32_t)end;
  return 1;
}

long
cdb_seqbatch(const struct cdb *c, uint32_t *pos, uint32_t *out, size_t max)
{
  size_t n = 0;
  uint32_t klen, dlen;
  while (n < max) {
    uint32_t p = *pos;
    int r = cdb_seqnext(c, pos, &klen, &dlen);
    if (r < 0)
      return -1;
    if (r == 0)
      break;
    out[3 * n] = p + 8;
    out[3 * n + 1] = klen;
    out[3 * n + 2] = dlen;
    ++n;
  }
  return (long)n;
}

long long
cdb_count(const struct cdb *c)
{
  uint32_t pos = CDB_HEADER_SIZE, klen, dlen;
  long long n = 0;
  int r;
  while ((r = cdb_seqnext(c, &pos, &klen, &dlen)) > 0)
    ++n;
  return r < 0 ? -1 : n;
}

int
cdb_record(const struct cdb *c, uint32_t rpos, uint32_t *kpos, uint32_t *klen, uint32_t *dpos, uint32_t *dlen)
{
  if ((uint64_t)rpos + 8 > c->size)
    return errno = EPROTO, -1;
  *klen = cdb_unpack(c->map + rpos);
  *dlen = cdb_unpack(c->map + rpos + 4);
  if ((uint64_t)rpos + 8 + *klen + *dlen > c->size)
    return errno = EPROTO, -1;
  *kpos = rpos + 8;
  *dpos = rpos + 8 + *klen;
  return 0;
}

uint64_t
cdb_recspan(const struct cdb *c, uint32_t rpos)
{
  uint32_t kpos, klen, dpos, dlen;
  if (cdb_record(c, rpos, &kpos, &klen, &dpos, &dlen) < 0)
    return UINT64_MAX;
  return (uint64_t)dpos << 32 | (dpos + dlen);
}

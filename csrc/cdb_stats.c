/* cdb_stats.c: cdbstats' distance histogram, every read checked. */
#include <errno.h>
#include "cdb_int.h"
#include "cdb_stats.h"

/* Search the key of the record at pos (klen bytes at pos + 8, all inside
 * the file) as djb's cdb_findnext does, until that record turns up.
 * Return 1 and *dist, 0 if the search ends without it, -1 if a slot or a
 * record it reads lies outside the file. */
static int
_stats_distance(const struct cdb *c, uint32_t pos, uint32_t klen, uint32_t *dist)
{
  const unsigned char *key = c->map + pos + 8;
  uint32_t h = cdb_hash(key, klen);
  const unsigned char *e = c->map + (h & 255) * 8;
  uint32_t tpos = cdb_unpack(e), slots = cdb_unpack(e + 4), slot, i;
  if (!slots)
    return 0;
  slot = (h >> 8) % slots;
  for (i = 0; i < slots; ++i) {
    uint64_t spos = (uint64_t)tpos + (uint64_t)slot * 8;
    uint32_t sh, rpos;
    if (spos + 8 > c->size)
      return -1;
    sh = cdb_unpack(c->map + spos);
    rpos = cdb_unpack(c->map + spos + 4);
    if (!rpos)
      return 0;
    if (sh == h) {
      if ((uint64_t)rpos + 8 > c->size)
        return -1;
      if (cdb_unpack(c->map + rpos) == klen) {
        if ((uint64_t)rpos + 8 + klen > c->size)
          return -1;
        if (memcmp(c->map + rpos + 8, key, klen) == 0 && rpos == pos) {
          *dist = i;
          return 1;
        }
      }
    }
    if (++slot == slots)
      slot = 0;
  }
  return 0;
}

int
cdb_stats(const struct cdb *c, struct cdb_stats *st)
{
  uint32_t eod = cdb_unpack(c->map), pos = CDB_HEADER_SIZE;
  memset(st, 0, sizeof *st);
  while (pos < eod) {
    uint32_t klen, dlen, dist;
    int r;
    st->pos = pos;
    st->truncated = 1;
    if (c->size - pos < 8)
      return errno = EPROTO, -1;
    klen = cdb_unpack(c->map + pos);
    dlen = cdb_unpack(c->map + pos + 4);
    if (c->size - pos - 8 < klen)
      return errno = EPROTO, -1;
    if (klen > CDB_STATS_KEYMAX) { /* cdbstats passes over it: not counted, not looked up */
      if (c->size - pos - 8 - klen < dlen)
        return errno = EPROTO, -1;
      pos += 8 + klen + dlen;
      continue;
    }
    r = _stats_distance(c, pos, klen, &dist);
    if (r <= 0) {
      st->truncated = r == 0;
      return errno = EPROTO, -1;
    }
    if (c->size - pos - 8 - klen < dlen)
      return errno = EPROTO, -1;
    ++st->records;
    ++st->dist[dist < CDB_STATS_BINS - 1 ? dist : CDB_STATS_BINS - 1];
    pos += 8 + klen + dlen;
  }
  st->truncated = 0;
  return 0;
}

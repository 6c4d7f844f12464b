/* cdb_init.c: accept a mapped file as a cdb. */
#include <errno.h>
#include "cdb.h"
#include "cdb_int.h"

int
cdb_init(struct cdb *c, const void *map, size_t size)
{
  uint32_t dend;
  if (size < CDB_HEADER_SIZE || size > CDB_MAX_SIZE)
    return errno = EPROTO, -1;
  c->map = map;
  c->size = (uint32_t)size;
  c->seen = NULL;
  c->seen_shift = 0;
  /* The records end where table 0 begins (djb's cdbdump reads them so).
   * A position outside the file only limits iteration; lookups check
   * every offset they use on their own. */
  dend = cdb_unpack(c->map);
  if (dend < CDB_HEADER_SIZE || dend > c->size)
    dend = c->size;
  c->dend = dend;
  return 0;
}

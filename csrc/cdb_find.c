/* cdb_find.c: look a key up, as djb's cdb_findnext does, every read checked. */
#include <errno.h>
#include "cdb.h"
#include "cdb_int.h"

int
cdb_findstart(struct cdb_find *f, const struct cdb *c, const void *key, size_t klen)
{
  return cdb_findstart_hash(f, c, key, klen, klen > CDB_MAX_SIZE ? 0 : cdb_hash(key, klen));
}

int
cdb_findstart_hash(struct cdb_find *f, const struct cdb *c, const void *key, size_t klen, uint32_t hash)
{
  const unsigned char *h;
  f->cdb = c;
  f->key = key;
  if (!c->map) /* a closed reader */
    return errno = EBADF, -1;
  if (klen > CDB_MAX_SIZE) { /* cannot be in any file: search an empty table */
    f->slots = f->left = 0;
    return 0;
  }
  f->klen = (uint32_t)klen;
  f->hash = hash;
  if (!cdb_seen(c, hash)) { /* no slot holds this hash: the key is absent */
    f->slots = f->left = 0;
    return 0;
  }
  h = c->map + (f->hash & 255) * 8; /* header entry: (table position, slots) */
  f->tpos = cdb_unpack(h);
  f->slots = cdb_unpack(h + 4);
  f->left = f->slots;
  if (!f->slots)
    return 0;
  f->slot = (f->hash >> 8) % f->slots;
  return 0;
}

/* The checks come in djb's order, so a damaged file gives the answers
 * cdbget and tcprulescheck give wherever those stay inside the file:
 * each slot when it is read, a record's header when its hash matches,
 * its key when the lengths match, its data when the key matches. */
int
cdb_findnext(struct cdb_find *f)
{
  const struct cdb *c = f->cdb;
  while (f->left) {
    uint64_t spos = (uint64_t)f->tpos + (uint64_t)f->slot * 8;
    const unsigned char *s;
    uint32_t h, rpos;
    if (spos + 8 > c->size)
      return errno = EPROTO, -1;
    s = c->map + spos;
    h = cdb_unpack(s);
    rpos = cdb_unpack(s + 4);
    --f->left;
    if (++f->slot == f->slots)
      f->slot = 0;
    if (!rpos)
      break; /* an empty slot ends the chain */
    if (h != f->hash)
      continue;
    if ((uint64_t)rpos + 8 > c->size)
      return errno = EPROTO, -1;
    {
      const unsigned char *r = c->map + rpos;
      uint32_t klen = cdb_unpack(r);
      uint32_t dlen = cdb_unpack(r + 4);
      if (klen != f->klen)
        continue;
      if ((uint64_t)rpos + 8 + klen > c->size)
        return errno = EPROTO, -1;
      if (memcmp(r + 8, f->key, klen) != 0)
        continue;
      if ((uint64_t)rpos + 8 + klen + dlen > c->size)
        return errno = EPROTO, -1;
      f->rpos = rpos;
      f->dpos = rpos + 8 + klen;
      f->dlen = dlen;
      return 1;
    }
  }
  f->left = 0;
  return 0;
}

int
cdb_find(const struct cdb *c, const void *key, size_t klen, uint32_t *rpos)
{
  struct cdb_find f;
  int r;
  if (cdb_findstart(&f, c, key, klen) < 0)
    return -1;
  r = cdb_findnext(&f);
  if (r > 0)
    *rpos = f.rpos;
  return r;
}

uint64_t
cdb_get(const struct cdb *c, const char *key, size_t klen)
{
  struct cdb_find f;
  int r;
  if (cdb_findstart(&f, c, key, klen) < 0)
    return 1;
  r = cdb_findnext(&f);
  if (r < 0)
    return 1;
  if (r == 0)
    return 0;
  return (uint64_t)f.dpos << 32 | (f.dpos + f.dlen);
}

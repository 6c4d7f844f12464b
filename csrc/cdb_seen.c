/* cdb_seen.c: a bitmap of the hashes a file's hash tables hold.
 *
 * A search for an absent key reads the slot its hash points at, somewhere in
 * the tables; in a file larger than the CPU caches that read waits for main
 * memory.  Most keys tcpserver's lookup tries are absent (the whole IP, then
 * each prefix, longest first, until one is there), and in a big block list
 * each of them costs that wait.  One bit per hash value class, set for every
 * occupied slot, answers "absent" from a bitmap small enough to stay in the
 * cache, for most absent keys.
 *
 * It never hides a record: a search finds a record (or meets damage) only at
 * an occupied slot holding the searched hash, and every such hash has its bit
 * set.  That holds when every slot a search can read is inside the file, so
 * the bitmap is made only for a file whose 256 tables all lie inside it;
 * searches in any other file read the tables, as before. */
#include <errno.h>
#include "cdb.h"
#include "cdb_int.h"

/* The total of the slots of the 256 tables, or 0 when one of them does not
 * lie inside the file. */
static uint64_t
_cdb_seen_slots(const struct cdb *c)
{
  uint64_t total = 0;
  unsigned b;
  for (b = 0; b < 256; ++b) {
    uint32_t tpos = cdb_unpack(c->map + b * 8), slots = cdb_unpack(c->map + b * 8 + 4);
    if (slots && (tpos < CDB_HEADER_SIZE || (uint64_t)tpos + (uint64_t)slots * 8 > c->size))
      return 0;
    total += slots;
  }
  return total;
}

size_t
cdb_seen_size(const struct cdb *c)
{
  uint64_t slots, bits = 64;
  if (!c->map || c->size < CDB_SEEN_MIN_SIZE || !(slots = _cdb_seen_slots(c)))
    return 0;
  while (bits < slots * 4 && bits < ((uint64_t)1 << 32)) /* 8 bits a record, at 2 slots a record */
    bits <<= 1;
  return (size_t)(bits / 8);
}

int
cdb_seen_build(struct cdb *c, unsigned char *bits, size_t nbytes)
{
  unsigned b, shift = 32;
  uint64_t n;
  if (nbytes == 0 || nbytes != cdb_seen_size(c))
    return errno = EINVAL, -1;
  for (n = (uint64_t)nbytes * 8; n > 1; n >>= 1)
    --shift;
  memset(bits, 0, nbytes);
  for (b = 0; b < 256; ++b) {
    uint32_t tpos = cdb_unpack(c->map + b * 8), slots = cdb_unpack(c->map + b * 8 + 4), i;
    const unsigned char *s = c->map + tpos;
    for (i = 0; i < slots; ++i, s += 8)
      if (cdb_unpack(s + 4)) {
        uint32_t at = cdb_seen_index(cdb_unpack(s), shift);
        bits[at >> 3] |= (unsigned char)(1u << (at & 7));
      }
  }
  c->seen = bits;
  c->seen_shift = shift;
  return 0;
}

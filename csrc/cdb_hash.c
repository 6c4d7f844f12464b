/* cdb_hash.c: the djb hash: h = 5381; h = (h * 33) ^ c for each byte. */
#include "cdb.h"
#include "cdb_int.h"

uint32_t
cdb_hash(const void *key, size_t len)
{
  const unsigned char *p = key;
  uint32_t h = CDB_HASH_START;
  while (len--)
    h = cdb_hash_step(h, *p++);
  return h;
}

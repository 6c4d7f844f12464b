/* cdb_dump.h: cdbdump's output, made from a mapped cdb file.
 *
 * For each record from offset 2048 up to the position in header entry 0:
 * "+KLEN,DLEN:KEY->DATA\n"; then one "\n".  That is cdbmake's input, so
 * dumping and making again gives the same file.  A damaged file gives what
 * freecdb's cdbdump gives (docs/oracle-cdbtools.md section 3): nothing is
 * validated beyond the bytes being there; where the file ends too soon the
 * output stops exactly where cdbdump's does (a record's numbers only once
 * its 8-byte header is there, key and data in whole 1024-byte pieces),
 * then the error comes. */
#ifndef CDBRULES_CDB_DUMP_H
#define CDBRULES_CDB_DUMP_H

#include <stddef.h>
#include <stdint.h>
#include "cdb.h"

/* The longest piece that is written whole: "+4294967295,4294967295:". */
#define CDB_DUMP_MINBUF 32

struct cdb_dump {
  const struct cdb *cdb;
  int state;
  uint32_t eod;      /* header entry 0's position: where cdbdump stops */
  uint32_t pos;      /* the record being written */
  uint32_t klen, dlen;
  uint32_t from;     /* the key or data being copied starts here ... */
  uint32_t upto;     /* ... and this many bytes of it are to be written */
  uint32_t done;     /* bytes of it written so far */
  int cut;           /* the file ends inside that key or data */
  uint64_t records;  /* records written whole */
};

/* Start dumping c (which must stay mapped until the dump ends). */
void cdb_dump_start(struct cdb_dump *d, const struct cdb *c);

/* Put the next part of the output into buf (cap >= CDB_DUMP_MINBUF).
 * Return how many bytes; 0 when the output is complete; -1 with errno
 * EPROTO when the file ends too soon (every byte cdbdump writes before it
 * gives up has been returned by then; d->pos is the record it was on). */
long cdb_dump_next(struct cdb_dump *d, unsigned char *buf, size_t cap);

#endif

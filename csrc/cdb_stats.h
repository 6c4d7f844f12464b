/* cdb_stats.h: what cdbstats reports about a cdb file.
 *
 * For each record, in file order from offset 2048 up to the position in
 * header entry 0, the record is looked up by its key as cdb_findnext()
 * would, through its table from the key's start slot, until the search
 * reaches that very record.  Its distance is the number of slots passed
 * over before its own (other keys, or earlier records with the same key).
 * Counts go to d0 .. d9 and ">9", as djb's cdbstats prints them.  A record
 * whose key is longer than 1024 bytes is passed over, neither looked up nor
 * counted, as cdbstats does (it keeps keys in a 1024-byte buffer).
 *
 * A damaged file fails as freecdb's cdbstats fails (docs/oracle-cdbtools.md
 * section 5): "truncated file" when the records themselves run past the end
 * or a record cannot be found in its table, "protocol error" when the
 * search reads outside the file. */
#ifndef CDBRULES_CDB_STATS_H
#define CDBRULES_CDB_STATS_H

#include <stdint.h>
#include "cdb.h"

#define CDB_STATS_BINS 11 /* d0 .. d9, then 10 and more */
#define CDB_STATS_KEYMAX 1024 /* cdbstats skips records with longer keys: not counted */

struct cdb_stats {
  uint64_t records;
  uint64_t dist[CDB_STATS_BINS];
  uint32_t pos;  /* on error: the record being read */
  int truncated; /* on error: 1 "truncated file", 0 "protocol error" */
};

/* Fill st.  Return 0, or -1 with errno EPROTO (st->truncated says which). */
int cdb_stats(const struct cdb *c, struct cdb_stats *st);

#endif

/* cdbmake_parse.h: cdbmake's input format, streamed into a cdb.
 *
 * The input is a sequence of records "+KLEN,DLEN:KEY->DATA\n" closed by an
 * empty line, exactly as freecdb's cdbmake reads it (docs/oracle-cdbtools.md
 * section 2.2): lengths are decimal digits, possibly none (= 0), with no
 * sign or space; key and data are raw bytes; anything after the closing
 * empty line is ignored.  Feed the input in pieces of any size: key and data
 * bytes go straight to the writer, so memory does not grow with their size.
 *
 * cdbmake gives up on a length as soon as its digits reach 4294967210 or
 * more ("out of memory"); so does this parser (CDBMAKE_E_KHUGE/_DHUGE). */
#ifndef CDBRULES_CDBMAKE_PARSE_H
#define CDBRULES_CDBMAKE_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include "cdb_make.h"

/* What is wrong with the input; cdbmake's words in quotes. */
enum cdbmake_errcode {
  CDBMAKE_OK = 0,
  CDBMAKE_E_END,     /* "unexpected end of input": no empty line at the end */
  CDBMAKE_E_PLUS,    /* "entry must start with +" */
  CDBMAKE_E_KLEN,    /* "bad keylen format": not digits then ',' */
  CDBMAKE_E_DLEN,    /* "bad datalen format": not digits then ':' */
  CDBMAKE_E_ARROW,   /* "key must be followed by ->" */
  CDBMAKE_E_NEWLINE, /* "newline expected" after the data */
  CDBMAKE_E_KHUGE,   /* the key length reached 4294967210 */
  CDBMAKE_E_DHUGE    /* the data length reached 4294967210 */
};

struct cdbmake_error {
  int code;         /* enum cdbmake_errcode; 0 for an error of the writer */
  uint64_t entry;   /* the record, counted from 1 */
  uint64_t start;   /* where that record starts in the input */
  uint64_t offset;  /* where the problem is: the offending byte, or the end of the input */
  int byte;         /* the offending byte, -1 at the end of the input */
};

struct cdbmake_parser {
  struct cdb_make *out;
  int state;
  uint64_t records; /* records added */
  uint64_t offset;  /* input bytes taken so far */
  uint64_t start;   /* where the record being read starts */
  uint64_t num;     /* the length being read */
  uint32_t klen, dlen;
  uint32_t left;    /* key or data bytes still to come */
  uint32_t hash;    /* of the key bytes so far */
  struct cdbmake_error err;
};

void cdbmake_parser_init(struct cdbmake_parser *p, struct cdb_make *out);

/* Parse the next len bytes of input.  Return 0 when all of them were taken
 * and more input is needed; 1 when the closing empty line has been read
 * (*used says how many bytes of this piece that took; the rest is to be
 * ignored); -1 on an error: errno EINVAL with p->err filled for bad input,
 * otherwise the writer's errno (p->err.entry and .start still say where). */
int cdbmake_feed(struct cdbmake_parser *p, const void *buf, size_t len, size_t *used);

/* The input has ended.  Return 0 if the closing empty line was read, else
 * -1 with errno EINVAL and p->err (CDBMAKE_E_END). */
int cdbmake_finish(struct cdbmake_parser *p);

#endif
